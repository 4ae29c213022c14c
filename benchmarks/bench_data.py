"""How long loading the full 70,000 MNIST images takes, from the cache and from .gz files.

Target (issue 2): under 0.5 s from the cache. Reference measured in the same run: reading the
same bytes with plain gzip + numpy, as a typical loader does.

    .venv/bin/python benchmarks/bench_data.py [MNIST_DIR]
"""

from __future__ import annotations

import gzip
import sys
import tempfile
from pathlib import Path

import harness
import numpy as np

from advgui.core import data


def _best(fn, repeats: int = 5) -> tuple[float, float]:
    tm = harness.timed(fn, repeats=repeats, warmup=0)
    return tm.best, tm.median


def main() -> None:
    harness.print_machine(light=True)
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else harness.data_dir()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        data.import_dataset(src, cache_folder=cache)
        if not all((src / f"{name}.gz").is_file() for name in data.FILES):
            src = Path(tmp) / "gz"  # e.g. ADVGUI_DATA is a cache of raw files: gzip them
            src.mkdir()
            for name in data.FILES:
                (src / f"{name}.gz").write_bytes(gzip.compress((cache / name).read_bytes()))

        def from_cache() -> None:
            data.load_mnist(use_env=False, use_download=False, use_npm=False, cache_folder=cache)

        def from_gz() -> None:
            data.load_mnist(src)

        def reference() -> None:  # gzip + numpy, no verification
            for name in data.FILES:
                raw = gzip.decompress((src / f"{name}.gz").read_bytes())
                arr = np.frombuffer(raw, np.uint8, offset=16 if "images" in name else 8)
                if "images" in name:
                    _ = arr.astype(np.float32) / 255

        for label, fn in (
            ("cache", from_cache),
            (".gz folder", from_gz),
            ("gzip+numpy ref", reference),
        ):
            best, med = _best(fn)
            print(f"load 70,000 images from {label:15s}: best {best:.3f} s, median {med:.3f} s")
        best_cache, _ = _best(from_cache)
        best_ref, _ = _best(reference)
        print(f"cache load vs gzip+numpy reference: {best_ref / best_cache:.2f}x faster")
        print(f"target < 0.5 s from cache: {'met' if best_cache < 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
