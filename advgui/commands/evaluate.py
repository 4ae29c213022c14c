"""``advgui evaluate``: compare models and defenses under the same attacks, naive and adaptive.

Defended training (``advgui defend``) lives in :mod:`advgui.commands.defend`.
"""

from __future__ import annotations

import argparse
from typing import Any

from advgui.commands.attack import _param
from advgui.commands.common import (
    add_certify_options,
    add_output_options,
    add_precision_option,
    certify_options,
    check_outputs,
    dataset_spec,
    finish,
    finite_float,
    load_data,
    nonnegative_int,
    positive_int,
    precision_policy,
    progress_bar,
)
from advgui.core.errors import ParameterError


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
    add_certify_options(
        e,
        certify_help="also certify every bare model: smoothing (randomized smoothing, "
        "certified L2 radius per image) or ibp (IBP-verified accuracy at each --eps)",
        sigma_help="smoothing noise (default: the sigma the model was noise-trained with)",
        radius="radii",
    )
    e.add_argument(
        "--smoothing-attack",
        type=nonnegative_int,
        metavar="N",
        help="smoothing: attack the smoothed classifier (SmoothAdv PGD-L2, 20 steps) on the "
        "first N of the --n images at every radius and report its accuracy beside the "
        "certified one; a certified figure above it (beyond Monte Carlo error) is flagged as "
        "a bug (default 100; 0 skips it)",
    )
    e.add_argument(
        "--smoothing-attack-samples",
        type=positive_int,
        metavar="S",
        help="smoothing: noise draws per step of that attack (EOT; default 16)",
    )
    add_precision_option(e, what="the attacks (every figure is judged by the float32 model; "
                         "a disagreement is noted)")  # fmt: skip
    add_output_options(e, json_help="write the results as JSON")
    e.add_argument("--csv", metavar="OUT.csv", help="write one row per model/attack/epsilon")
    e.add_argument(
        "--plot",
        metavar="OUT.png",
        help="draw robust accuracy against epsilon (with --certify ibp: the verified accuracy "
        "as a dashed line beside the attacks); with --certify smoothing also OUT-certified.png, "
        "certified accuracy against the L2 radius beside the attack on the smoothed classifier",
    )
    e.set_defaults(func=cmd_evaluate)


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

    spec = dataset_spec(args)
    grid = spec.eps_grid if args.eps is None else evaluation.parse_eps_grid(args.eps)
    attacks = tuple(dict.fromkeys(args.attack or ("fgsm", "pgd")))
    certify_opts = certify_options(args)
    cfg = evaluation.EvalConfig(
        attacks=attacks,
        eps=grid,
        n=args.n,
        restarts=args.restarts,
        pgd_steps=args.steps,
        eot_samples=args.eot,
        adaptive=not args.naive_only,
        detector_fpr=args.detector_fpr,
        attack_params=attack_params(attacks, args),
        precision=args.precision,
        **certify_opts,
    ).validate()
    precision_policy(args)  # refused (exit 2) before any model or data is loaded
    for name in cfg.attacks:  # every parameter checked by its spec before any work
        evaluation.make_eval_attack(cfg, name)
    for t in args.transform:
        parse_transform(t)
    certified_plot = None
    if args.plot and cfg.certify == "smoothing":
        certified_plot = evaluation.certified_png_path(args.plot)
    outputs = [("--json", args.json), ("--csv", args.csv), ("--plot", args.plot)]
    check_outputs(
        [*outputs, ("--plot (certified)", certified_plot)],
        inputs=[("--model", m) for m in args.model],
    )
    clfs = [models.load_model(m) for m in args.model]
    for clf in clfs:  # before the dataset is even loaded: a refusal costs nothing
        data.check_dataset(clf, spec)
        if cfg.certify is not None:
            evaluation.check_certifiable(clf, cfg)
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
    lines = table_lines(result)
    if args.plot:
        written = evaluation.save_png(result, args.plot)
        lines.append("plot: " + ", ".join(str(p) for p in written))
    finish(args, result, "\n".join(lines))
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
        lines.extend(certified_lines(entry, eps))
        for note in entry["notes"]:
            lines.append(f"  * {note}")
    lines.append(f"({result['seconds']:.0f} s)")
    return lines


def certified_lines(entry: dict[str, Any], eps: list[float]) -> list[str]:
    """The certified figures beside the attacks': IBP as a row under the epsilon columns
    (a "!" marks a figure above an attack's: a bug), smoothing per L2 radius."""
    cert = entry.get("certified")
    if not isinstance(cert, dict) or "status" in cert:
        return []
    mark = "" if cert.get("consistent", True) else "!"
    if cert.get("method") == "ibp":
        by_eps = dict(zip(cert["eps"], cert["verified_accuracy"], strict=True))
        cells = "".join(
            f"{(f'{100 * by_eps[e]:.1f}' + mark) if e in by_eps else '-':>9}" for e in eps
        )
        return [f"{entry['label'][:34]:34} {'IBP cert':9}" + cells]
    figures = ", ".join(
        f"r={r:g}: {100 * a:.1f}%{mark}"
        for r, a in zip(cert["radii"], cert["certified_accuracy"], strict=True)
    )
    lines = [
        f"{entry['label'][:34]:34} certified (smoothing, sigma {cert['sigma']:g}, "
        f"n {cert['n_samples']}, alpha {cert['alpha']:g}; L2 radius): {figures}; "
        f"abstained {100 * cert['abstain_rate']:.1f}%"
    ]
    emp = cert.get("empirical")
    if isinstance(emp, dict):
        pairs = ", ".join(
            f"r={r:g}: {100 * c:.1f}% / {100 * a:.1f}%" + ("!" if c > a + tol + 1e-12 else "")
            for r, c, a, tol in zip(
                emp["radii"],
                emp["certified_accuracy"],
                emp["accuracy"],
                emp["tolerance"],
                strict=True,
            )
        )
        lines.append(
            f"  certified / empirical on the first {emp['n']} images (SmoothAdv PGD-L2, "
            f"{emp['steps']} steps, {emp['samples']} noise draws per step): {pairs}"
        )
    return lines
