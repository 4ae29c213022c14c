"""``advgui evaluate`` (compare models and defenses) and ``advgui defend`` (defended training).

``advgui train --defense ...`` calls :func:`train_defense` from here, so both spellings give the
same model.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from advgui.commands.common import (
    add_output_options,
    check_outputs,
    dataset_spec,
    eps_help,
    finish,
    finite_float,
    load_data,
    model_store,
    positive_int,
    progress_bar,
)
from advgui.core.errors import ParameterError
from advgui.core.progress import Progress


def register(sub: argparse._SubParsersAction) -> None:
    from advgui.core.defenses.adversarial import ARCHS, DEFENSES
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

    d = sub.add_parser(
        "defend",
        help="train a defended model (adversarial training or distillation)",
        description="Train a defended classifier; same as advgui train --defense.",
    )
    add_defense_arguments(d, ARCHS, DEFENSES, required=True)
    d.add_argument("--out", required=True, metavar="MODEL.keras", help="where to save the model")
    add_output_options(d, json_help="write per-epoch figures as JSON")
    d.add_argument("--no-store", action="store_true", help="do not add it to the model store")
    d.set_defaults(func=cmd_defend)


def add_defense_arguments(
    p: argparse.ArgumentParser, archs: Any, defenses: Any, *, required: bool = False
) -> None:
    """The options of defended training (shared with ``advgui train --defense``)."""
    p.add_argument("--defense", choices=defenses, required=required, help="defense to train")
    p.add_argument("--eps", type=finite_float, help=eps_help("attack budget trained against"))
    if required:  # advgui train has its own --epochs, --lr, --batch-size, --seed, --n-train
        p.add_argument(
            "--epochs",
            type=positive_int,
            help="passes over the training images (default 6 for pgd-at and trades, else 10)",
        )
        p.add_argument("--lr", type=finite_float, help="peak learning rate (Adam, one-cycle)")
        p.add_argument("--batch-size", type=positive_int)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--n-train", type=positive_int, help="training images to use")
    p.add_argument(
        "--defense-arch",
        choices=archs,
        help="architecture of the defended model (default cnn-s2-wide: fast on a CPU)",
    )
    p.add_argument("--steps", type=positive_int, help="inner PGD/TRADES steps (default 10)")
    p.add_argument("--beta", type=finite_float, help="TRADES beta (default 6)")
    p.add_argument("--temperature", type=finite_float, help="distillation T (default 100)")


def defense_config(args: argparse.Namespace) -> Any:
    from advgui.core.defenses import DefenseConfig

    eps = args.eps if args.eps is not None else dataset_spec(args).default_eps
    overrides = {
        name: value
        for name, value in (
            ("eps", eps),
            ("epochs", getattr(args, "epochs", None)),
            ("lr", getattr(args, "lr", None)),
            ("batch_size", getattr(args, "batch_size", None)),
            ("n_train", getattr(args, "n_train", None)),
            ("arch", args.defense_arch),
            ("steps", args.steps),
            ("beta", args.beta),
            ("temperature", args.temperature),
        )
        if value is not None
    }
    seed = getattr(args, "seed", 0) or 0
    return DefenseConfig.for_method(args.defense, seed=seed, **overrides)


def train_defense(args: argparse.Namespace) -> int:
    """Train, save (and keep in the store), report: the body of ``defend``/``train --defense``."""
    from advgui.core import models
    from advgui.core.defenses import train_defended

    out = Path(args.out)
    if out.suffix != ".keras":
        raise ParameterError(f"--out {out}: model files must end in .keras", field="out")
    check_outputs([("--out", out), ("--json", args.json)])
    config = defense_config(args).validate()
    spec = dataset_spec(args)
    mnist = load_data(args)
    bar = progress_bar(args, unit="batch")

    def progress(update: Progress) -> None:
        info = update.info  # only the figures a person watches on a terminal
        brief = {k: info[k] for k in ("epoch", "loss") if k in info}
        if info.get("epoch_end"):
            brief["clean"] = info["clean_accuracy"]
            brief["pgd"] = info["robust_accuracy"]
        bar(Progress(update.done, update.total, update.message, brief))

    try:
        result = train_defended(config, mnist, progress=progress)
    finally:
        bar.close()
    clf = result.classifier
    test_acc = clf.accuracy(mnist.x_test, mnist.y_test)
    clf.meta["test_accuracy"] = test_acc
    models.save_model(clf, out)
    stored = None
    if not args.no_store:
        stored = model_store(args).add(clf)
    last = result.history[-1] if result.history else {}
    payload = {
        "test_accuracy": test_acc,
        "seconds": result.seconds,
        "best_epoch": result.best_epoch,
        "history": result.history,
        "config": result.config,
        "model": str(out),
        "dataset": spec.name,
        "dataset_sha256": spec.sha256,
    }
    text = (
        f"{config.method}: test accuracy {100 * test_acc:.2f}%, held-out PGD-{config.check_steps} "
        f"accuracy at eps {config.eps:g}: {100 * last.get('robust_accuracy', 0):.1f}% "
        f"(epoch {result.best_epoch} kept, {result.seconds:.0f} s); saved {out}"
    )
    if stored is not None:
        payload["stored"] = str(stored)
        text += f"\nkept in the model store: {stored}"
    finish(args, payload, text)
    return 0


def cmd_defend(args: argparse.Namespace) -> int:
    return train_defense(args)


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
