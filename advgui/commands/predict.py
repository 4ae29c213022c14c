"""``advgui predict``: what a model says about your own pictures, class and probabilities.

The pictures go through the same conversion as the GUI import (:func:`advgui.core.images.
load_image`, in the dataset's style), so the command answers "what does the model see in my
drawing?" exactly as the Attack tab would. Classes are shown by index and name.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from advgui.commands.common import (
    add_image_options,
    add_output_options,
    check_outputs,
    dataset_spec,
    finish,
    load_user_images,
    note,
    progress_bar,
)
from advgui.core.data import MNIST
from advgui.core.errors import ParameterError

#: MNIST's class names, in the order of the model's outputs (each dataset's are in its spec).
CLASS_NAMES = MNIST.class_names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify your own pictures: class and the 10 probabilities",
        description="Classify --image FILE or every picture in --images DIR with --model, "
        "after the dataset's conversion of the GUI import (MNIST: digit-style centring; "
        "Fashion-MNIST: the whole picture fitted into 28x28).",
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
    spec = dataset_spec(args)
    bar = progress_bar(args, unit="img")
    try:
        x, files, skipped = load_user_images(
            args.image,
            args.images,
            progress=bar,
            skipped=lambda line: note(args, line),
            style=spec.image_style,
        )
    finally:
        bar.close()
    if args.images is not None:  # the JSON must not overwrite one of the pictures
        check_outputs([("--json", args.json)], inputs=[("--images file", f) for f in files])
    clf = load_classifier(args.model, args)
    probs = clf.predict_proba(x)
    rows = [
        {
            "file": str(path),
            "class": int(p.argmax()),
            "class_name": spec.class_names[int(p.argmax())],
            "confidence": float(p.max()),
            "probs": [float(v) for v in p],
        }
        for path, p in zip(files, probs, strict=True)
    ]
    payload = {
        "model": clf.name,
        "dataset": spec.name,
        "classes": list(spec.class_names),
        "images": rows,
        "skipped": skipped,
    }
    finish(args, payload, table(rows, skipped=len(skipped), class_names=spec.class_names))
    return 0


def table(
    rows: list[dict[str, Any]], *, skipped: int = 0, class_names: tuple[str, ...] = CLASS_NAMES
) -> str:
    """One row per picture: file, class, confidence and the ten probabilities in percent.

    Long class names (Fashion-MNIST's) head the columns by index, with a legend line below."""
    width = max(4, *(len(Path(r["file"]).name) for r in rows))
    width = min(width, 40)
    short = all(len(n) <= 5 for n in class_names)
    heads = class_names if short else tuple(str(i) for i in range(len(class_names)))
    label = max(5, *(len(f"{i} {n}") for i, n in enumerate(class_names))) if not short else 5
    head = f"{'file':{width}} {'class':>{label}}   conf " + "".join(f"{h:>6}" for h in heads)
    lines = [head]
    for r in rows:
        name = Path(r["file"]).name
        name = name if len(name) <= width else name[: width - 3] + "..."
        cells = "".join(f"{100 * p:6.1f}" for p in r["probs"])
        shown = r["class_name"] if short else f"{r['class']} {r['class_name']}"
        lines.append(f"{name:{width}} {shown:>{label}} {100 * r['confidence']:5.1f}% {cells}")
    if not short:
        lines.append("(classes: " + ", ".join(f"{i} {n}" for i, n in enumerate(class_names)) + ")")
    if len(rows) > 1 or skipped:
        lines.append(
            f"({len(rows)} images"
            + (f", {skipped} file{'s' if skipped > 1 else ''} skipped" if skipped else "")
            + "; "
            "probabilities in %)"
        )
    return "\n".join(lines)
