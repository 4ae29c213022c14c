"""``advgui train``: train an MLP or CNN on the dataset (``--dataset``, default MNIST) headless,
save it, print the test accuracy."""

from __future__ import annotations

import argparse
import math
from typing import Any

from advgui.commands.common import (
    add_model_outputs,
    add_precision_option,
    check_model_outputs,
    dataset_spec,
    finish_training,
    finite_float,
    keep_model,
    load_data,
    positive_int,
    precision_policy,
    train_with_bar,
)
from advgui.core import models, training


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a classifier on the dataset and save it as a .keras file",
        description="Train a classifier on the dataset (--dataset, default mnist). Unset "
        "options take the architecture's defaults. The model records its dataset and is also "
        "kept in that dataset's model store unless --no-store.",
    )
    p.add_argument("--arch", choices=models.ARCHITECTURES, default="cnn")
    from advgui.core.data import DATASETS

    per_dataset = "; ".join(
        f"{arch} on {spec.name}: {values['epochs']}"
        for spec in DATASETS.values()
        for arch, values in spec.train_defaults.items()
        if "epochs" in values
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        help="passes over the training images (default: the architecture's, "
        f"{training.DEFAULTS['cnn']['epochs']}; {per_dataset})",
    )
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=finite_float, help="peak learning rate")
    p.add_argument("--schedule", choices=training.SCHEDULES, default="onecycle")
    p.add_argument("--optimizer", choices=training.OPTIMIZERS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=positive_int, help="training images to use (default 55000)")
    p.add_argument(
        "--n-val",
        type=int,
        help="validation images held out from the training set (default 5000)",
    )
    add_model_outputs(p, json_help="write metrics as JSON")
    add_precision_option(p, what="training (the saved model is float32 either way)")
    # --defense makes this an alias of advgui defend (advgui.commands.defend).
    from advgui.commands.defend import add_defense_arguments
    from advgui.core.defenses.adversarial import ARCHS, DEFENSES

    add_defense_arguments(p, ARCHS, DEFENSES)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    if getattr(args, "defense", None):
        from advgui.commands.defend import cmd_defend

        return cmd_defend(args)
    out = check_model_outputs(args)
    overrides = {
        name: value
        for name, value in (
            ("epochs", args.epochs),
            ("batch_size", args.batch_size),
            ("lr", args.lr),
            ("optimizer", args.optimizer),
            ("n_train", args.n_train),
            ("n_val", args.n_val),
        )
        if value is not None
    }
    spec = dataset_spec(args)
    per_dataset = dict(spec.train_defaults.get(args.arch, {}))  # shown in --help, never hidden
    config = training.TrainConfig.for_arch(
        args.arch,
        schedule=args.schedule,
        seed=args.seed,
        precision=args.precision,
        **{**per_dataset, **overrides},
    ).validate()
    policy = precision_policy(args)
    mnist = load_data(args)

    def brief(info: dict[str, Any]) -> dict[str, Any]:
        shown = {k: info[k] for k in ("epoch", "loss", "accuracy", "test_accuracy") if k in info}
        if math.isfinite(info.get("val_accuracy", math.nan)):
            shown["val_acc"] = info["val_accuracy"]
        if math.isfinite(info.get("images_per_second", math.nan)):
            shown["img/s"] = round(info["images_per_second"])
        return shown

    result = train_with_bar(args, lambda p: training.train(config, mnist, progress=p), brief)
    clf = result.classifier
    stored = keep_model(args, clf, out)
    payload = {
        "test_accuracy": result.test_accuracy,
        "epochs": config.epochs,
        "epochs_completed": clf.meta["epochs_completed"],
        "seconds": result.seconds,
        "train_seconds": clf.meta["train_seconds"],
        "history": result.history,
        "config": config.to_dict(),
        "num_weights": clf.meta["num_weights"],
        "model": str(out),
        "dataset": spec.name,
        "dataset_sha256": spec.sha256,
        "classes": list(spec.class_names),
        "precision": config.precision,
        "precision_policy": policy,
    }
    on = "" if spec.digits else f" on {spec.title}"
    text = (
        f"test accuracy{on}: {100 * result.test_accuracy:.2f}% ({result.seconds:.1f} s"
        + ("" if policy == "float32" else f", trained in {policy}, saved in float32")
        + f"); saved {out}"
    )
    return finish_training(args, payload, text, stored)
