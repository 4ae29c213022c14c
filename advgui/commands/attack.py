"""``advgui attack``: attack one test image with any registered attack; save PNG and JSON.

``--method`` choices and the attack's options come from the registry and the attacks' specs
(:mod:`advgui.core.attacks.spec`), so an attack added later appears here with its own options
and help; an option is passed to an attack only if given, and refused if it does not take it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from advgui.commands.common import (
    add_image_options,
    add_output_options,
    add_precision_option,
    check_outputs,
    dataset_spec,
    finish,
    finite_float,
    load_data,
    load_user_images,
    model_store,
    note,
    positive_int,
    precision_policy,
    progress_bar,
    with_names,
)
from advgui.core.errors import ModelFileError, ParameterError
from advgui.core.precision import call_attack, describe, run_attack
from advgui.core.progress import Progress

#: Attack parameters that are not offered as options of their own: the command's own
#: ``--batch-size`` is the chunk size of batch mode (FGSM's is reachable with --param).
#: ``precision`` is the command's own --precision (every attack; core/precision.py); an
#: attack's bfloat16 gradients stay reachable as --param precision=bfloat16.
NOT_OPTIONS = ("batch_size", "precision")


def _methods() -> list[str]:
    from advgui.core.attacks import ATTACKS

    return sorted(ATTACKS)


def spec_options() -> dict[str, tuple[Any, list[str]]]:
    """Every attack parameter by name: (the first attack's Param, the methods taking it)."""
    from advgui.core.attacks import ATTACKS

    found: dict[str, tuple[Any, list[str]]] = {}
    for name in sorted(ATTACKS):
        for param in ATTACKS[name].spec:
            if param.name not in NOT_OPTIONS:
                found.setdefault(param.name, (param, []))[1].append(name)
    return found


def _option_type(param: Any) -> Any:
    """argparse type of an attack parameter: one line for what cannot be read; the range is
    checked by the attack's spec once the method is known."""

    def parse(text: str) -> Any:
        word = text.strip().lower()
        if param.words and word in param.words:
            return word
        if param.type == "bool":
            if word in ("1", "on", "true", "yes"):
                return True
            if word in ("0", "off", "false", "no"):
                return False
            raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
        value = finite_float(text)
        if param.words and value < param.lo:
            words = " or ".join(repr(w) for w in param.words)
            raise argparse.ArgumentTypeError(
                f"{param.title.lower()} must be >= {param.lo:g} or {words}, got {text!r}"
            )
        if param.type == "int":
            if value != int(value):
                raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
            return int(value)
        return value

    return parse


def _param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    value = value.strip()
    if value.replace(".", "", 1).replace("-", "", 1).replace("e", "", 1).isalpha():
        return name.strip().replace("-", "_"), value  # a word: a choice, "auto"...
    return name.strip().replace("-", "_"), finite_float(value)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attack",
        help="attack a test image, a batch of them or your own pictures, and save the result",
        description="Attack test image --index, the first --n test images, your picture "
        "--image or every picture in --images with --method; writes 8-bit PNGs (verified by "
        "re-classifying them) with JSON sidecars, and a JSON record. The true digit of your "
        "own picture is unknown: an untargeted attack succeeds when the model's prediction "
        "moves away from its clean prediction (the record's reference_label).",
    )
    p.add_argument("--model", metavar="M", help=".keras file or stored model name (required)")
    p.add_argument("--method", required=True, choices=_methods())
    source = p.add_mutually_exclusive_group()
    source.add_argument("--index", type=int, metavar="I", help="test image 0-9999")
    source.add_argument(
        "--n", type=positive_int, metavar="N", help="batch mode: attack the first N test images "
        "and report success rate, robust accuracy, norms and images/s"
    )  # fmt: skip
    add_image_options(source)
    p.add_argument("--batch-size", type=positive_int, default=128, dest="batch_size",
                   help="--n/--images: images per chunk (default 128)")  # fmt: skip
    p.add_argument(
        "--target", type=int, metavar="T", help="goal class 0-9 (targeted; Fashion-MNIST: "
        "0 T-shirt/top ... 9 Ankle boot, see advgui --dataset fashion-mnist data info)"
    )  # fmt: skip
    options = p.add_argument_group(
        "attack parameters", "each attack's own, from its spec; given only when set, so each "
        "attack keeps its defaults (advgui attack --method M --help-params lists M's)"
    )  # fmt: skip
    for name, (param, methods) in spec_options().items():
        flag = "--" + name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": f"param_{name}", "default": None}
        if param.choices:
            kwargs["choices"] = sorted({c for m in methods for c in _choices(m, name)})
        else:
            kwargs["type"] = _option_type(param)
            kwargs["metavar"] = (
                "on|off" if param.type == "bool" else "|".join([name.upper(), *param.words])
            )
        kwargs["help"] = f"{param.help or param.title} ({', '.join(methods)})"
        if name == "eps":  # the one default that depends on the dataset
            from advgui.core.data import eps_defaults_text

            kwargs["help"] += f"; L-inf default {eps_defaults_text()}"
        options.add_argument(flag, **{k: v for k, v in kwargs.items() if v is not None})
    p.add_argument(
        "--help-params",
        action="store_true",
        help="list the chosen --method's parameters, defaults and ranges, and exit",
    )
    p.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any parameter of the attack by its name (repeatable)",
    )
    p.add_argument(
        "--out", metavar="PNG|DIR", help="write the adversarial image here (+ <name>_x10.png "
        "and <name>.json); with --images: the folder for one PNG + JSON each and index.csv"
    )  # fmt: skip
    add_precision_option(p, what="the attack's forward/backward passes (iterate, projection "
                         "and the reported figures stay float32: a mixed attack's images are "
                         "re-checked by the float32 model)")  # fmt: skip
    add_output_options(p, json_help="write the result record (batch: the summary) here")
    p.set_defaults(func=cmd_attack)


def load_classifier(spec: str, args: argparse.Namespace | None = None) -> Any:
    """A model from a ``.keras`` path, or by name from the model store of the command's
    dataset; with ``args``, refused (one line) when it was trained on another dataset."""
    clf = _find_classifier(spec, args)
    if args is not None:
        from advgui.core.data import check_dataset

        check_dataset(clf, dataset_spec(args))
    if clf.meta.get("outputs") != "logits":  # say how the attacks get their logits
        print(
            f"model {clf.name}: outputs {clf.meta['outputs']}; {clf.meta['outputs_how']}",
            file=sys.stderr,
        )
    return clf


def _find_classifier(spec: str, args: argparse.Namespace | None = None) -> Any:
    from advgui.core import data, models, paths
    from advgui.core.store import ModelStore

    path = Path(spec).expanduser()
    if path.is_file():
        return models.load_model(path)
    store = model_store(args) if args is not None else ModelStore()
    for entry in store.entries():
        if spec in (entry.name, entry.path.stem, entry.path.name):
            return models.load_model(entry.path)
    current = dataset_spec(args) if args is not None else data.MNIST
    for other in data.DATASETS.values():  # stored under another dataset: say which
        if other is current:
            continue
        for entry in ModelStore(paths.store_dir(other.name)).entries():
            if spec in (entry.name, entry.path.stem, entry.path.name):
                raise ModelFileError(
                    f"{spec}: stored with the {other.title} models, not {current.title}'s; "
                    f"use --dataset {other.name}"
                )
    raise ModelFileError(f"{spec}: no such model file, and no stored model of that name")


def _choices(method: str, name: str) -> tuple[str, ...]:
    from advgui.core.attacks import ATTACKS

    param = ATTACKS[method].param(name)
    return param.choices if param is not None else ()


def attack_params(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The attack parameters given on the command line (checked by the attack's spec)."""
    given = {
        name: getattr(args, f"param_{name}")
        for name in spec_options()
        if getattr(args, f"param_{name}", None) is not None
    }
    given.update(dict(args.param))
    return given


def params_help(cls: type) -> str:
    """The method's parameters, one line each: option, default, range, what it does."""
    lines = [f"{cls.name} ({cls.kind}): {cls.describe()}"]
    for p in cls.spec:
        default = "(the attack chooses)" if p.default is None else repr(p.default)
        flag = (
            "--param " + p.name + "=..."
            if p.name in NOT_OPTIONS
            else "--" + p.name.replace("_", "-")
        )
        lines.append(f"  {flag:22s} default {default}; {p.describe()}. {p.help}".rstrip())
    return "\n".join(lines)


def cmd_attack(args: argparse.Namespace) -> int:
    from advgui.core.attacks import ATTACKS, make_attack

    cls = ATTACKS[args.method]
    if args.help_params:
        print(params_help(cls))
        return 0
    if not args.model:
        raise ParameterError(
            "give --model M (a .keras file or a stored model's name)", field="model"
        )
    params = attack_params(args, cls)
    spec = dataset_spec(args)
    eps_param = cls.param("eps")
    if (
        "eps" not in params
        and eps_param is not None
        and eps_param.default != spec.default_eps
        and eps_param.default == data_default_eps()
        and params.get("norm", "linf") == "linf"
    ):  # MNIST's L-inf budget is not the other datasets'
        params["eps"] = spec.default_eps
    if args.target is not None and not 0 <= args.target < spec.num_classes:
        raise ParameterError(
            f"--target must be 0-{spec.num_classes - 1}, got {args.target}", field="target"
        )
    if args.target is None and not cls.supports_untargeted:
        raise ParameterError(f"{args.method} needs a target digit: give --target T", field="target")
    if args.target is not None and not cls.supports_targeted:
        raise ParameterError(f"{args.method} cannot aim at a target digit", field="target")
    attack = make_attack(args.method, **params)  # validates before the slow loading
    precision_policy(args)  # refused (exit 2) before the slow loading too
    if args.n is not None:
        return cmd_attack_batch(args, attack)
    if args.images is not None:
        return cmd_attack_images(args, attack)
    if args.index is None and args.image is None:
        raise ParameterError(
            "give --index I (a test image), --n N (batch mode), --image FILE or --images DIR",
            field="index",
        )
    return cmd_attack_one(args, attack)


def data_default_eps() -> float:
    """MNIST's L-inf budget: the default the attacks' specs carry."""
    from advgui.core.data import MNIST

    return MNIST.default_eps


def _png_outputs(out: Path | None) -> list[tuple[str, Path | None]]:
    from advgui.core import export

    if out is None:
        return []
    png, large, sidecar = export.export_paths(out)
    return [("--out", png), ("--out's enlarged copy", large), ("--out's JSON sidecar", sidecar)]


def cmd_attack_one(args: argparse.Namespace, attack: Any) -> int:
    """One image (``--index`` or ``--image``): PNG + sidecar (``--out``) and the record."""
    from advgui.core import export

    spec = dataset_spec(args)
    out = Path(args.out) if args.out else None
    check_outputs([*_png_outputs(out), ("--json", args.json)], inputs=[("--image", args.image)])
    clf = load_classifier(args.model, args)  # a refused model file costs no dataset load
    if args.image is not None:
        x, _, _ = load_user_images(args.image, None, style=spec.image_style)
        labels = None
    else:
        mnist = load_data(args)
        if not 0 <= args.index < len(mnist.y_test):
            raise ParameterError(
                f"--index must be 0-{len(mnist.y_test) - 1}, got {args.index}", field="index"
            )
        x = mnist.x_test[args.index : args.index + 1]
        labels = mnist.y_test[args.index : args.index + 1]
    bar = progress_bar(args, unit="step")

    def progress(update: Progress) -> None:
        # Live images and curves are for the GUI; the terminal shows the numbers.
        scalars = {k: v for k, v in update.info.items() if isinstance(v, (int, float, str))}
        bar(Progress(update.done, update.total, update.message, scalars))

    try:
        res, check = call_attack(attack, clf, x, precision=args.precision, labels=labels,
                                 goals=args.target, progress=progress)  # fmt: skip
    finally:
        bar.close()
    record = res.record(0)
    _with_precision(record, args, check)
    record["index"] = args.index
    record["model"] = clf.name
    record["model_outputs"] = clf.meta.get("outputs")
    record["dataset"] = spec.name
    if args.image is not None:
        record["source_file"] = str(args.image)
        where = str(args.image)
    else:
        where = f"test image {args.index} (label {spec.label(record['source_label'])})"
    record["reference_label"] = (
        record["source_label"] if record["source_label"] >= 0 else record["pred_before"]
    )
    if out is not None:
        extra = {"source_file": str(args.image)} if args.image is not None else None
        written = export.export_image(
            res, 0, clf, out, index=args.index, extra=extra, class_names=spec.class_names
        )
        record["png"] = str(export.export_paths(out)[0])
        record["png_pred"] = written["png_pred"]
        record["png_goal_confidence"] = written["png_goal_confidence"]
    else:
        record["png"] = None
        record["png_pred"] = export.png_prediction(clf, res.x_adv[0])
    if res.details.lam is not None:
        record["lam"] = res.details.lam[0]
    if res.details.stall_note:
        record["note"] = res.details.stall_note
    goal = "" if record["goal"] is None else f" goal {spec.label(record['goal'])}"
    text = (
        f"{args.method} on {where}{goal}: "
        f"{spec.label(record['pred_before'])} -> {spec.label(record['pred_after'])} "
        f"({100 * record['goal_confidence']:.1f}%), "
        f"{'success' if record['success'] else 'failed'}, L2 {record['l2']:.3f}, "
        f"Linf {record['linf']:.3f}, {record['seconds']:.2f} s; PNG classified "
        f"{spec.label(record['png_pred'])}" + (f", saved {record['png']}" if record["png"] else "")
    )
    text += describe(check)
    if record.get("note"):
        text += f"\nnote: {record['note']}"
    finish(args, with_names(record, spec), text)
    return 0


def cmd_attack_images(args: argparse.Namespace, attack: Any) -> int:
    """``--images DIR``: every picture of a folder; one PNG + JSON each and one index.csv."""
    from advgui.core import export

    if not args.out:
        raise ParameterError("--images needs --out DIR: the folder for the results", field="out")
    spec = dataset_spec(args)
    out, src = Path(args.out), Path(args.images)
    if out.exists() and out.resolve() == src.resolve():
        raise ParameterError(
            "--out must not be the --images folder (its results would be read as inputs next time)",
            field="out",
        )
    index_csv = ("--out's index.csv", out / export.CSV_NAME)
    check_outputs([index_csv, ("--json", args.json)], folders=[("--out", out)])
    bar = progress_bar(args, unit="img")
    try:
        x, files, skipped = load_user_images(
            None,
            args.images,
            progress=bar,
            skipped=lambda line: note(args, line),
            style=spec.image_style,
        )
    finally:
        bar.close()
    goals = None if args.target is None else [args.target] * len(files)
    names = export.batch_names(args.method, len(files), goals=goals, sources=files)
    planned = [index_csv]
    for name in names:
        planned += [(f"--out's {p.name}", p) for p in export.export_paths(out / name)]
    check_outputs(
        [*planned, ("--json", args.json)],
        folders=[("--out", out)],
        inputs=[(f"--images file {f.name}", f) for f in files],
    )
    clf = load_classifier(args.model, args)
    bar = progress_bar(args, unit="img")
    try:
        res, check = run_attack(
            attack,
            clf,
            x,
            None,
            precision=args.precision,
            goals=args.target,
            batch_size=args.batch_size,
            progress=lambda u: bar(Progress(u.done, u.total, u.message)),
        )
    finally:
        bar.close()
    records = export.export_batch(res, clf, out, sources=files, class_names=spec.class_names)
    summary = res.summary()
    for key in ("robust_accuracy", "clean_accuracy"):  # need true labels, which are unknown
        summary.pop(key, None)
    _with_precision(summary, args, check)
    summary.update(
        model=clf.name,
        dataset=spec.name,
        target=args.target,
        target_name=spec.class_name(args.target),
        folder=str(src),
        out=str(out),
        png_success_rate=sum(r["png_success"] for r in records) / len(records),
        skipped=skipped,
        images=[
            with_names({k: r.get(k) for k in ("source_file", "png", "reference_label", "goal",
                                              "pred_before", "pred_after", "png_pred",
                                              "success", "png_success", "l2", "linf")}, spec)
            for r in records
        ],
    )  # fmt: skip
    lines = []
    for r in records:
        lines.append(
            f"{Path(r['source_file']).name}: {spec.label(r['pred_before'])} -> "
            f"{spec.label(r['pred_after'])}, "
            f"{'success' if r['success'] else 'failed'}, L2 {r['l2']:.3f}, "
            f"PNG classified {spec.label(r['png_pred'])}, saved {r['png']}"
        )
    lines.append(
        f"{args.method} on {len(records)} images from {src}"
        + (f" ({_files(len(skipped))} skipped)" if skipped else "")
        + f": success rate {100 * summary['success_rate']:.1f}% "
        f"(PNGs {100 * summary['png_success_rate']:.1f}%), "
        f"{summary['images_per_second']:.1f} images/s; saved in {out} (index.csv)" + describe(check)
    )
    finish(args, summary, "\n".join(lines))
    return 0


def _with_precision(record: dict[str, Any], args: argparse.Namespace, check: Any) -> None:
    """The record's precision: what was asked, the policy it ran under and, for a mixed run,
    the float32 re-check (``precision_check``; the record's own figures are float32's)."""
    record["precision"] = args.precision
    record["precision_policy"] = check["policy"] if check else "float32"
    if check:
        record["precision_check"] = check


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def cmd_attack_batch(args: argparse.Namespace, attack: Any) -> int:
    """``--n N``: attack the first N test images in chunks; summary to stdout and --json."""
    from advgui.core.data import MNIST

    if args.out:
        raise ParameterError("--out writes one image; not available with --n", field="out")
    check_outputs([("--json", args.json)])
    spec = dataset_spec(args)
    clf = load_classifier(args.model, args)
    mnist = load_data(args)
    if args.n > len(mnist.y_test):
        raise ParameterError(f"--n must be at most {len(mnist.y_test)}, got {args.n}", field="n")
    bar = progress_bar(args, unit="img")
    try:
        res, check = run_attack(
            attack,
            clf,
            mnist.x_test[: args.n],
            mnist.y_test[: args.n],
            precision=args.precision,
            goals=args.target,
            batch_size=args.batch_size,
            progress=lambda u: bar(Progress(u.done, u.total, u.message)),
        )
    finally:
        bar.close()
    summary = res.summary()
    summary["model"] = clf.name
    summary["model_outputs"] = clf.meta.get("outputs")
    summary["dataset"] = spec.name
    summary["target"] = args.target
    summary["target_name"] = spec.class_name(args.target)
    _with_precision(summary, args, check)
    goal = "" if args.target is None else f" (goal {spec.label(args.target)})"
    which = "" if spec is MNIST else f"{spec.title} "
    text = (
        f"{args.method} on {summary['n']} {which}test images{goal}: success rate "
        f"{100 * summary['success_rate']:.1f}%, robust accuracy "
        f"{100 * summary['robust_accuracy']:.1f}% (clean {100 * summary['clean_accuracy']:.1f}%), "
        f"median L2 {summary['median_l2']:.3f}, median Linf {summary['median_linf']:.3f}, "
        f"{summary['images_per_second']:.1f} images/s" + describe(check)
    )
    found = res.details.digest() or {}  # a cascade and its warnings (AutoAttack), queries
    summary.update(found)
    if found.get("cascade"):
        from advgui.core.attacks.flags import cascade_text

        text += f"\nbroken by {cascade_text(found['cascade'])}"
    for flag in found.get("flags", []):
        text += f"\nwarning: {flag['message']}"
    finish(args, summary, text)
    return 0
