"""Peak memory of refusing hostile files, at the sizes issue 13 found (each case in a fresh
process; peak resident set size from the kernel's rusage, as /usr/bin/time -v reports it).

Cases: a 3 GiB gzip bomb in an IDX folder, an npz member of 3 GiB, a forged .npy header of
(10**7, 10**6, 28), a 3 GB sparse file as the dataset, a model whose advgui.json or config.json
is padded to 1 GiB (the store listing and the attack command). Reference, same run: importing
the real MNIST. Target: each refused with exit 2 and one line, peak under 300 MB. Needs GNU
time (Debian's package ``time``).

    .venv/bin/python benchmarks/bench_hostile_files.py [--gib 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET_MB = 300


def run(argv: list[str], env: dict[str, str], work: Path) -> tuple[int, float, list[str]]:
    """Exit code, peak RSS in MB and the stderr lines of ``advgui ARGV`` in a new process.

    Measured by GNU time (``/usr/bin/time``, a small parent): a child forked straight from this
    benchmark would report this process's own peak (Linux keeps it across exec).
    """
    out = work / "time.txt"
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(out), sys.executable, "-m", "advgui", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak_kb = float(out.read_text().strip().splitlines()[-1])
    lines = [line for line in proc.stderr.splitlines() if line.startswith("advgui")]
    return proc.returncode, peak_kb / 1024.0, lines


def deflate_zeros(head: bytes, size: int, wbits: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, wbits)
    out = [comp.compress(head)]
    chunk = b"\0" * (1 << 24)
    for _ in range(size // len(chunk)):
        out.append(comp.compress(chunk))
    out.append(comp.flush())
    return b"".join(out)


def npy_header(shape: tuple[int, ...]) -> bytes:
    head = repr({"descr": "|u1", "fortran_order": False, "shape": shape}).encode()
    head += b" " * (64 - (10 + len(head) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head


def zip_with_big_member(path: Path, members: dict[str, bytes], big: str, head: bytes, size: int):
    """A zip whose ``big`` member inflates to ``size`` bytes (deflated zeros, written raw)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in members.items():
            if name != big:
                zf.writestr(name, blob)
        with zf.open(big, "w", force_zip64=True) as fh:
            fh.write(head)
            chunk = b" " * (1 << 24)
            for _ in range(size // len(chunk)):
                fh.write(chunk)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=3.0, help="size of the bombs (GiB)")
    ap.add_argument("--data", default=os.environ.get("ADVGUI_DATA"), help="real MNIST folder")
    args = ap.parse_args()
    size = int(args.gib * (1 << 30))
    work = Path(tempfile.mkdtemp(prefix="advgui-bench-hostile-"))
    env = {**os.environ, "ADVGUI_HOME": str(work / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("ADVGUI_DATA", None)
    from advgui.core import data, models, training

    print(f"building the hostile files ({args.gib:g} GiB bombs) in {work} ...", flush=True)
    mnist = data.load_mnist(args.data, use_download=False) if args.data else data.load_mnist()
    real = work / "real"
    data.write_cache(data.load_raw(args.data)[0] if args.data else data.load_raw()[0], real)
    cases: list[tuple[str, list[str]]] = [
        ("reference: data import of the real MNIST", ["data", "import", str(real)])
    ]

    bomb = work / "gzip-bomb"
    shutil.copytree(real, bomb)
    (bomb / "train-images-idx3-ubyte").unlink()
    idx_head = struct.pack(">HBBIII", 0, 8, 3, 60000, 28, 28)
    blob = deflate_zeros(idx_head, size, 16 + zlib.MAX_WBITS)
    (bomb / "train-images-idx3-ubyte.gz").write_bytes(blob)
    cases.append(
        (
            f"gzip IDX of {len(blob) / 2**20:.1f} MB -> {args.gib:g} GiB",
            ["data", "import", str(bomb)],
        )
    )

    npz = work / "member.npz"
    small = {f"{k}.npy": npy_header((1,)) + b"\0" for k in ("y_train", "x_test", "y_test")}
    zip_with_big_member(npz, small, "x_train.npy", npy_header((60000, 28, 28)), size)
    cases.append((f"npz member of {args.gib:g} GiB", ["data", "import", str(npz)]))

    forged = work / "forged.npz"
    huge = npy_header((10**7, 10**6, 28)) + b"\0" * 64
    with zipfile.ZipFile(forged, "w") as zf:
        for k in ("x_train", "y_train", "x_test", "y_test"):
            zf.writestr(f"{k}.npy", huge)
    cases.append(("npy header (10**7, 10**6, 28)", ["data", "import", str(forged)]))

    sparse = work / "sparse.bin"
    with open(sparse, "wb") as fh:
        fh.truncate(size)
    cases.append((f"{args.gib:g} GiB sparse file as the dataset", ["data", "import", str(sparse)]))

    cfg = training.TrainConfig(arch="mlp", epochs=1, n_train=500, n_val=0, batch_size=100)
    tiny = models.save_model(training.train(cfg, mnist).classifier, work / "tiny.keras")
    with zipfile.ZipFile(tiny) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    store = Path(env["ADVGUI_HOME"]) / "data" / "models"
    store.mkdir(parents=True)
    gib = 1 << 30
    zip_with_big_member(store / "padded-meta.keras", members, "advgui.json", b"{}", gib)
    cases.append(("store listing with advgui.json padded to 1 GiB",
                  ["--data", str(real), "attack", "--model", "no-such-name", "--method", "fgsm",
                   "--index", "0"]))  # fmt: skip
    padded = work / "padded-config.keras"
    zip_with_big_member(padded, members, "config.json", members["config.json"], gib)
    cases.append(("model with config.json padded to 1 GiB",
                  ["--data", str(real), "attack", "--model", str(padded), "--method", "fgsm",
                   "--index", "0"]))  # fmt: skip

    print(f"\n{'case':52s} {'exit':>4s} {'lines':>5s} {'peak MB':>8s} {'x ref':>6s}")
    reference = None
    ok = True
    for label, argv in cases:
        code, peak, lines = run(argv, env, work)
        reference = reference or peak
        refused = label.startswith("reference") or (code == 2 and len(lines) >= 1)
        within = peak < TARGET_MB
        ok &= refused and (within or label.startswith("reference"))
        print(f"{label:52s} {code:4d} {len(lines):5d} {peak:8.0f} {peak / reference:6.2f}")
        if not label.startswith("reference"):
            print(f"    {lines[-1] if lines else '(no message)'}"[:150])
    print(f"\ntarget: every hostile case exit 2 with one line, peak < {TARGET_MB} MB: "
          f"{'met' if ok else 'NOT met'}")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
