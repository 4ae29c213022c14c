"""``advgui evaluate`` (compare models and defenses) and ``advgui defend`` (defended training).

``advgui train --defense ...`` calls :func:`train_defense` from here, so both spellings give the
same model.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from advgui.commands.attack import _param
from advgui.commands.common import (
    add_output_options,
    check_outputs,
    finish,
    finite_float,
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
    versions = sorted({c for a in eval_attacks() for c in _choices(a, "version")})
    e.add_argument(
        "--version",
        choices=versions,
        help="AutoAttack's version (standard: APGD-CE, APGD-T, FAB-T, Square; plus: more "
        "restarts; rand: EOT for randomised defenses), for every attack that takes one",
    )
    e.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter for every chosen attack that takes it, e.g. queries=1000 (repeatable)",
    )
    e.add_argument("--eps", default="0,0.1,0.2,0.3", help="epsilon grid, e.g. 0,0.1,0.2,0.3")
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
    p.add_argument("--eps", type=finite_float, help="attack budget trained against (default 0.3)")
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

    overrides = {
        name: value
        for name, value in (
            ("eps", args.eps),
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
    from advgui.core import data, models
    from advgui.core.defenses import train_defended

    out = Path(args.out)
    if out.suffix != ".keras":
        raise ParameterError(f"--out {out}: model files must end in .keras", field="out")
    check_outputs([("--out", out), ("--json", args.json)])
    config = defense_config(args).validate()
    mnist = data.load_mnist(args.data, use_download=False, use_npm=False)
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
        from advgui.core.store import ModelStore

        stored = ModelStore().add(clf)
    last = result.history[-1] if result.history else {}
    payload = {
        "test_accuracy": test_acc,
        "seconds": result.seconds,
        "best_epoch": result.best_epoch,
        "history": result.history,
        "config": result.config,
        "model": str(out),
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


def _choices(attack: str, name: str) -> tuple[str, ...]:
    from advgui.core.attacks import ATTACKS

    param = ATTACKS[attack].param(name)
    return param.choices if param is not None else ()


def attack_params(attacks: tuple[str, ...], args: argparse.Namespace) -> dict[str, dict]:
    """--version and --param, given to each chosen attack whose spec takes them (checked by
    the spec when the attack is built); a parameter no chosen attack takes is refused."""
    from advgui.core.attacks import ATTACKS

    given = list(args.param)
    if args.version is not None:
        given.append(("version", args.version))
    out: dict[str, dict] = {}
    for name, value in given:
        takers = [a for a in attacks if ATTACKS[a].param(name) is not None]
        if not takers:
            raise ParameterError(
                f"no chosen attack takes {name} (attacks: {', '.join(attacks)})", field=name
            )
        for a in takers:
            out.setdefault(a, {})[name] = value
    return out


def cmd_evaluate(args: argparse.Namespace) -> int:
    from advgui.core import data, evaluation, models
    from advgui.core.defenses import parse_transform

    attacks = tuple(dict.fromkeys(args.attack or ("fgsm", "pgd")))
    cfg = evaluation.EvalConfig(
        attacks=attacks,
        eps=evaluation.parse_eps_grid(args.eps),
        n=args.n,
        restarts=args.restarts,
        pgd_steps=args.steps,
        eot_samples=args.eot,
        adaptive=not args.naive_only,
        detector_fpr=args.detector_fpr,
        attack_params=attack_params(attacks, args),
    ).validate()
    for name in cfg.attacks:  # every parameter checked by its spec before any work
        evaluation.make_eval_attack(cfg, name)
    for t in args.transform:
        parse_transform(t)
    check_outputs(
        [("--json", args.json), ("--csv", args.csv), ("--plot", args.plot)],
        inputs=[("--model", m) for m in args.model],
    )
    clfs = [models.load_model(m) for m in args.model]
    mnist = data.load_mnist(args.data, use_download=False, use_npm=False)
    transforms = ["none", *[t for t in args.transform if t != "none"]]
    bar = progress_bar(args, unit="step")
    try:
        result = evaluation.evaluate(clfs, mnist, cfg, transforms=transforms, progress=bar)
    finally:
        bar.close()
    if args.csv:
        evaluation.save_csv(result, args.csv)
    if args.plot:
        evaluation.save_png(result, args.plot)
    finish(args, result, "\n".join(table_lines(result)))
    return 0


def table_lines(result: dict[str, Any]) -> list[str]:
    from advgui.core.attacks.flags import cascade_text
    from advgui.core.evaluation import _details as evaluation_details

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
            for view, i, d in evaluation_details(res):
                cascade = [c for c in d.get("cascade") or [] if isinstance(c, dict)]
                if cascade:
                    left = cascade[-1].get("robust_after")
                    lines.append(
                        f"  {attack} at eps {res['eps'][i]:g} ({view}): broken by "
                        f"{cascade_text(cascade)}; {left} robust"
                    )
        for note in entry["notes"]:
            lines.append(f"  * {note}")
    lines.append(f"({result['seconds']:.0f} s)")
    return lines
