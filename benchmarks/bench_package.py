"""The frozen app against the source tree: time to the window, selftest time, bundle size.

Onedir was chosen over onefile so that the frozen app starts about as fast as the checkout;
this prints both, measured in the same run, and their ratio. Needs a build (``make package``
or ``bash packaging/build.sh``); without ``dist/advgui`` it says so and exits 0.

    .venv/bin/python benchmarks/bench_package.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

ROOT = harness.ROOT
FROZEN = ROOT / "dist" / "advgui" / "advgui"


def _until_line(cmd: list[str], env: dict[str, str], marker: str) -> float:
    """Wall-clock seconds from starting ``cmd`` to a stdout line containing ``marker``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    elapsed = None
    for line in proc.stdout:
        if marker in line and elapsed is None:
            elapsed = time.perf_counter() - t0
    if proc.wait(timeout=600) != 0 or elapsed is None:
        raise RuntimeError(f"{cmd} failed or never printed {marker!r}")
    return elapsed


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not FROZEN.is_file():
        print(f"no frozen build at {FROZEN}; run `make package` first")
        return
    harness.print_machine(light=True)
    source = [sys.executable, "-m", "advgui"]
    frozen = [str(FROZEN)]
    with tempfile.TemporaryDirectory() as home:
        env = dict(
            os.environ,
            QT_QPA_PLATFORM="offscreen",
            ADVGUI_HOME=home,
            ADVGUI_STARTUP_TIMING="1",
            ADVGUI_QUIT_AFTER_SHOW="1",
        )
        env.setdefault("ADVGUI_DATA", str(harness.data_dir()))
        shown = {"source": [], "frozen": []}
        for _ in range(args.runs):  # interleaved, so machine load hits both alike
            shown["source"].append(_until_line(source, env, "startup:"))
            shown["frozen"].append(_until_line(frozen, env, "startup:"))
        out = Path(home) / "out"
        selftest = {
            name: _until_line([*cmd, "selftest", "--out", str(out)], env, "selftest: PASSED")
            for name, cmd in (("source", source), ("frozen", frozen))
        }
    src_med = statistics.median(shown["source"])
    frz_med = statistics.median(shown["frozen"])
    print(f"window shown (median of {args.runs}, wall clock from process start):")
    print(f"  source tree  {src_med:6.2f} s   {[round(s, 2) for s in shown['source']]}")
    print(f"  frozen app   {frz_med:6.2f} s   {[round(s, 2) for s in shown['frozen']]}")
    print(f"  ratio frozen/source  {frz_med / src_med:.2f}")
    print("selftest (MNIST, 10 training batches, FGSM, PGD, PNG export), wall clock:")
    print(f"  source tree  {selftest['source']:6.2f} s")
    print(f"  frozen app   {selftest['frozen']:6.2f} s")
    print(f"  ratio frozen/source  {selftest['frozen'] / selftest['source']:.2f}")
    internal = FROZEN.parent / "_internal"
    total = _size(FROZEN.parent)
    print(f"bundle {FROZEN.parent}: {total / 1e6:.0f} MB")
    for part in ("tensorflow", "PySide6", "numpy.libs", "mnist"):
        if (internal / part).exists():
            print(f"  {part:12s} {_size(internal / part) / 1e6:7.1f} MB")
    for artefact in sorted((ROOT / "dist").glob("advgui*.*")):
        print(f"{artefact.name}: {artefact.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
