"""``advgui predict``: what a model says about your own pictures, class and probabilities.

The pictures go through the same conversion as the GUI import (:func:`advgui.core.images.
load_image`), so the command answers "what does the model see in my drawing?" exactly as the
Attack tab would.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from advgui.commands.common import (
    add_image_options,
    add_output_options,
    check_outputs,
    finish,
    load_user_images,
    note,
    progress_bar,
)
from advgui.core.errors import ParameterError

#: Names of the ten classes, in the order of the model's outputs.
CLASS_NAMES = tuple(str(d) for d in range(10))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify your own pictures of digits: class and the 10 probabilities",
        description="Classify --image FILE or every picture in --images DIR with --model, "
        "after the MNIST-style conversion of the GUI import.",
    )
    p.add_argument("--model", required=True, metavar="M", help=".keras file or stored model name")
    source = p.add_mutually_exclusive_group(required=True)
    add_image_options(source)
    add_output_options(p, json_help="write the predictions as JSON")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from advgui.commands.attack import load_classifier

    if args.image is None and args.images is None:  # argparse enforces it; kept for callers
        raise ParameterError("give --image FILE or --images DIR", field="image")
    inputs = [("--image", args.image)]
    if args.images is not None:
        inputs.append(("--images folder", args.images))
    check_outputs([("--json", args.json)], inputs=inputs)
    bar = progress_bar(args, unit="img")
    try:
        x, files, skipped = load_user_images(
            args.image, args.images, progress=bar, skipped=lambda line: note(args, line)
        )
    finally:
        bar.close()
    if args.images is not None:  # the JSON must not overwrite one of the pictures
        check_outputs([("--json", args.json)], inputs=[("--images file", f) for f in files])
    clf = load_classifier(args.model)
    probs = clf.predict_proba(x)
    rows = [
        {
            "file": str(path),
            "class": int(p.argmax()),
            "class_name": CLASS_NAMES[int(p.argmax())],
            "confidence": float(p.max()),
            "probs": [float(v) for v in p],
        }
        for path, p in zip(files, probs, strict=True)
    ]
    payload = {
        "model": clf.name,
        "classes": list(CLASS_NAMES),
        "images": rows,
        "skipped": skipped,
    }
    finish(args, payload, table(rows, skipped=len(skipped)))
    return 0


def table(rows: list[dict[str, Any]], *, skipped: int = 0) -> str:
    """One row per picture: file, class, confidence and the ten probabilities in percent."""
    width = max(4, *(len(Path(r["file"]).name) for r in rows))
    width = min(width, 40)
    head = f"{'file':{width}} class   conf " + "".join(f"{name:>6}" for name in CLASS_NAMES)
    lines = [head]
    for r in rows:
        name = Path(r["file"]).name
        name = name if len(name) <= width else name[: width - 3] + "..."
        cells = "".join(f"{100 * p:6.1f}" for p in r["probs"])
        lines.append(f"{name:{width}} {r['class_name']:>5} {100 * r['confidence']:5.1f}% {cells}")
    if len(rows) > 1 or skipped:
        lines.append(
            f"({len(rows)} images"
            + (f", {skipped} file{'s' if skipped > 1 else ''} skipped" if skipped else "")
            + "; "
            "probabilities in %)"
        )
    return "\n".join(lines)
