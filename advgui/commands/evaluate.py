"""``advgui evaluate``: compare models and defenses under the same attacks, naive and adaptive.

Defended training (``advgui defend``) lives in :mod:`advgui.commands.defend`.
"""

from __future__ import annotations

import argparse
from typing import Any

from advgui.commands.common import (
    add_output_options,
    check_outputs,
    dataset_spec,
    finish,
    finite_float,
    load_data,
    positive_int,
    progress_bar,
)


def register(sub: argparse._SubParsersAction) -> None:
    from advgui.core.evaluation import eval_attacks

    e = sub.add_parser(
        "evaluate",
        help="clean and robust accuracy of models and defenses over an epsilon grid",
        description="Attack every model (and every model behind every --transform) the same "
        "way, naively and adaptively (BPDA, EOT, logits/T for distillation), and report clean "
        "and robust accuracy per attack and epsilon. Images: the first --n test images.",
    )
    e.add_argument(
        "--model", action="append", required=True, metavar="M.keras", help="a model (repeatable)"
    )
    e.add_argument(
        "--transform",
        action="append",
        default=[],
        metavar="T",
        help="input transformation evaluated besides the bare model (repeatable): "
        "squeeze-bits:1, median:2, jpeg:75, noise:0.3, or a chain like squeeze-bits:1+median:2",
    )
    e.add_argument(
        "--attack",
        action="append",
        choices=eval_attacks(),
        metavar="A",
        help=f"attack (repeatable; default fgsm and pgd): {', '.join(eval_attacks())}",
    )
    from advgui.core.data import eps_defaults_text

    e.add_argument(
        "--eps",
        help=f"epsilon grid, e.g. 0,0.1,0.2,0.3 (default {eps_defaults_text('eps_grid')})",
    )
    e.add_argument("--n", type=positive_int, default=1000, help="test images (default 1000)")
    e.add_argument("--restarts", type=positive_int, default=1, help="PGD random restarts")
    e.add_argument("--steps", type=positive_int, default=40, help="PGD/BIM steps (default 40)")
    e.add_argument("--eot", type=positive_int, default=8, help="EOT draws for random transforms")
    e.add_argument("--naive-only", action="store_true", help="skip the adaptive attacks")
    e.add_argument(
        "--detector-fpr",
        type=finite_float,
        metavar="F",
        help="also run the feature-squeezing detector at this false-positive rate (e.g. 0.05)",
    )
    add_output_options(e, json_help="write the results as JSON")
    e.add_argument("--csv", metavar="OUT.csv", help="write one row per model/attack/epsilon")
    e.add_argument("--plot", metavar="OUT.png", help="draw robust accuracy against epsilon")
    e.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from advgui.core import data, evaluation, models
    from advgui.core.defenses import parse_transform

    spec = dataset_spec(args)
    grid = spec.eps_grid if args.eps is None else evaluation.parse_eps_grid(args.eps)
    cfg = evaluation.EvalConfig(
        attacks=tuple(args.attack or ("fgsm", "pgd")),
        eps=grid,
        n=args.n,
        restarts=args.restarts,
        pgd_steps=args.steps,
        eot_samples=args.eot,
        adaptive=not args.naive_only,
        detector_fpr=args.detector_fpr,
    ).validate()
    for t in args.transform:
        parse_transform(t)
    check_outputs(
        [("--json", args.json), ("--csv", args.csv), ("--plot", args.plot)],
        inputs=[("--model", m) for m in args.model],
    )
    clfs = [models.load_model(m) for m in args.model]
    for clf in clfs:  # before the dataset is even loaded: a refusal costs nothing
        data.check_dataset(clf, spec)
    mnist = load_data(args)
    transforms = ["none", *[t for t in args.transform if t != "none"]]
    bar = progress_bar(args, unit="step")
    try:
        result = evaluation.evaluate(clfs, mnist, cfg, transforms=transforms, progress=bar)
    finally:
        bar.close()
    result = {"dataset": spec.name, "dataset_sha256": spec.sha256, **result}
    if args.csv:
        evaluation.save_csv(result, args.csv)
    if args.plot:
        evaluation.save_png(result, args.plot)
    finish(args, result, "\n".join(table_lines(result)))
    return 0


def table_lines(result: dict[str, Any]) -> list[str]:
    eps = result["eps"]
    head = f"{'model / transform':34} {'attack':9}" + "".join(f"{e:>9g}" for e in eps)
    lines = [f"robust accuracy on {result['n']} test images (naive/adaptive where they differ)"]
    lines.append(head)
    for entry in result["results"]:
        for attack, res in entry["attacks"].items():
            cells = []
            for i in range(len(eps)):
                r = f"{100 * res['robust_accuracy'][i]:.1f}"
                if (
                    res["adaptive"] is not None
                    and abs(res["naive"][i] - res["adaptive"][i]) > 0.005
                ):
                    r += "*"
                cells.append(f"{r:>9}")
            lines.append(f"{entry['label'][:34]:34} {attack:9}" + "".join(cells))
        for note in entry["notes"]:
            lines.append(f"  * {note}")
    lines.append(f"({result['seconds']:.0f} s)")
    return lines
