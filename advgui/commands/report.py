"""``advgui report``: the stored work (models, attack runs, defense comparisons) as one
self-contained HTML file, and optionally a PDF of the same content."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from pathlib import Path

from advgui.commands.common import ProgressBar
from advgui.core.errors import ParameterError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a lab report (HTML, optionally PDF) of the stored work",
        description="Write every stored model, attack run and defense comparison of the "
        "dataset (--dataset; each keeps its own stores), optionally only those since a date, "
        "into one self-contained HTML file, images inline.",
    )
    p.add_argument("--out", required=True, metavar="REPORT.html", help="the HTML report")
    p.add_argument("--pdf", metavar="REPORT.pdf", help="also write the report as PDF")
    p.add_argument(
        "--since", type=_since, metavar="YYYY-MM-DD", help="only work stored on or after this day"
    )
    p.set_defaults(func=cmd_report)


def _since(text: str) -> _dt.date:
    from advgui.core.report import parse_since

    try:
        return parse_since(text)
    except ParameterError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def check_output(path: Path, option: str, suffixes: tuple[str, ...]) -> None:
    """Refuse an output path before any work: wrong suffix, missing or unwritable folder."""
    if path.suffix.lower() not in suffixes:
        raise ParameterError(f"{option} {path}: must end in {' or '.join(suffixes)}", field=option)
    if path.is_dir():
        raise ParameterError(f"{option} {path}: is a folder", field=option)
    folder = path.parent
    if not folder.is_dir():
        raise ParameterError(f"{option} {path}: folder {folder} does not exist", field=option)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ParameterError(f"{option} {path}: no permission to write in {folder}", field=option)


def cmd_report(args: argparse.Namespace) -> int:
    from advgui.core import report

    out = Path(args.out)
    pdf = Path(args.pdf) if args.pdf else None
    check_output(out, "--out", (".html", ".htm"))
    if pdf is not None:
        check_output(pdf, "--pdf", (".pdf",))
    bar = ProgressBar()
    try:
        rep = report.build_report(
            since=args.since, progress=bar, dataset=getattr(args, "dataset", None)
        )
    finally:
        bar.close()
    for warning in rep.warnings:
        print(f"advgui report: warning: {warning}", file=sys.stderr)
    report.write_html(rep, out)
    written = [str(out)]
    if pdf is not None:
        from advgui.qt.report_pdf import ensure_gui_app, write_pdf

        app = ensure_gui_app()  # kept alive while Qt lays out the pages
        write_pdf(rep.html, pdf)
        del app
        written.append(str(pdf))
    print(f"{' and '.join(written)}: {rep.summary()}")
    return 0
