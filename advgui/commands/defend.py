"""``advgui defend``: train a defended model (adversarial training, distillation, or training
for certification: ``--defense noise --sigma S`` for randomized smoothing, ``--defense ibp``).

``advgui train --defense METHOD ...`` is an alias: :mod:`advgui.commands.train` adds the same
options (:func:`add_defense_arguments`) and hands the run to :func:`cmd_defend`, so both
spellings are one implementation and give the same model for the same seed.
"""

from __future__ import annotations

import argparse
from typing import Any

from advgui.commands.common import (
    add_model_outputs,
    add_precision_option,
    check_model_outputs,
    dataset_spec,
    eps_help,
    finish_training,
    finite_float,
    keep_model,
    load_data,
    positive_int,
    precision_policy,
    train_with_bar,
)


def register(sub: argparse._SubParsersAction) -> None:
    from advgui.core.defenses.adversarial import ARCHS, DEFENSES

    d = sub.add_parser(
        "defend",
        help="train a defended model (adversarial training or distillation)",
        description="Train a defended classifier. `advgui train --defense METHOD ...` is an "
        "alias of this command (the same options and implementation).",
    )
    add_defense_arguments(d, ARCHS, DEFENSES, required=True)
    add_model_outputs(d, json_help="write per-epoch figures as JSON")
    add_precision_option(d, what="training (the saved model is float32 either way)")
    d.set_defaults(func=cmd_defend)


def add_defense_arguments(
    p: argparse.ArgumentParser, archs: Any, defenses: Any, *, required: bool = False
) -> None:
    """The options of defended training (shared with ``advgui train --defense``)."""
    p.add_argument(
        "--defense",
        choices=defenses,
        required=required,
        help="defense to train" if required else "train this defense: alias of advgui defend",
    )
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
    p.add_argument(
        "--sigma",
        type=finite_float,
        help="noise training: the Gaussian noise's standard deviation (default 0.5; "
        "certify with advgui evaluate --certify smoothing at the same sigma)",
    )


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
            ("sigma", getattr(args, "sigma", None)),
            ("precision", getattr(args, "precision", None)),
        )
        if value is not None
    }
    seed = getattr(args, "seed", 0) or 0
    return DefenseConfig.for_method(args.defense, seed=seed, **overrides)


def cmd_defend(args: argparse.Namespace) -> int:
    """Train, save (and keep in the store), report: ``defend`` and ``train --defense``."""
    from advgui.core.defenses import train_defended

    out = check_model_outputs(args)
    config = defense_config(args).validate()
    policy = precision_policy(args)
    spec = dataset_spec(args)
    mnist = load_data(args)

    def brief(info: dict[str, Any]) -> dict[str, Any]:
        shown = {k: info[k] for k in ("epoch", "loss") if k in info}
        if info.get("epoch_end"):
            shown["clean"] = info["clean_accuracy"]
            if "robust_accuracy" in info:  # noise training is checked clean only
                shown["pgd"] = info["robust_accuracy"]
        return shown

    result = train_with_bar(args, lambda p: train_defended(config, mnist, progress=p), brief)
    clf = result.classifier
    test_acc = result.test_accuracy
    stored = keep_model(args, clf, out)
    kept = result.kept_record()
    payload = {
        "test_accuracy": test_acc,
        "seconds": result.seconds,
        "best_epoch": result.best_epoch,
        "history": result.history,
        "config": result.config,
        "model": str(out),
        "dataset": spec.name,
        "dataset_sha256": spec.sha256,
        "precision": config.precision,
        "precision_policy": policy,
    }
    if config.method == "noise":
        held = f"trained under Gaussian noise of sigma {config.sigma:g}"
    else:
        held = (
            f"held-out PGD-{config.check_steps} accuracy at eps {config.eps:g}: "
            f"{100 * (kept.get('robust_accuracy') or 0):.1f}%"
        )
    text = (
        f"{config.method}: test accuracy {100 * test_acc:.2f}%, {held} "
        f"(epoch {result.best_epoch} kept, {result.seconds:.0f} s"
        + ("" if policy == "float32" else f", trained in {policy}, saved in float32")
        + f"); saved {out}"
    )
    return finish_training(args, payload, text, stored)
