"""``advgui leaderboard``: a class's models ranked under one attack, here or on a Ray cluster."""

from __future__ import annotations

import argparse
import os

from advgui.commands.attack import _param
from advgui.commands.common import (
    add_certify_options,
    add_output_options,
    certify_options,
    check_outputs,
    dataset_spec,
    finish,
    finite_float,
    load_data,
    note,
    positive_int,
    progress_bar,
)


def register(sub: argparse._SubParsersAction) -> None:
    from advgui.core.evaluation import eval_attacks
    from advgui.core.leaderboard import DEFAULT_CHUNK, INSTALL_HINT

    p = sub.add_parser(
        "leaderboard",
        help="rank many models (a class's submissions) under one attack",
        description="Attack every model the same way (the first --n test images, one attack, "
        "one seed) and rank them by robust accuracy, with clean accuracy, AutoAttack's "
        "cascade and warning flags (and, with --certify, a certified figure beside the robust "
        "one). Files that are not usable models are listed as refused. "
        "--cluster sends the (model x image-chunk) tasks to a Ray cluster.",
    )
    p.add_argument(
        "--models",
        nargs="+",
        required=True,
        metavar="DIR|FILE",
        help="model files, or folders whose every file is taken",
    )
    p.add_argument(
        "--attack",
        default="autoattack",
        choices=eval_attacks(),
        metavar="A",
        help=f"the attack (default autoattack): {', '.join(eval_attacks())}",
    )
    p.add_argument("--eps", type=finite_float, default=0.3, help="L-inf budget (default 0.3)")
    p.add_argument("--n", type=positive_int, default=1000, help="test images (default 1000)")
    p.add_argument(
        "--chunk",
        type=positive_int,
        default=DEFAULT_CHUNK,
        help=f"images per task (default {DEFAULT_CHUNK})",
    )
    p.add_argument("--seed", type=int, default=0, help="the attack's seed (default 0)")
    p.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter of the attack, e.g. version=plus or queries=1000 (repeatable)",
    )
    add_certify_options(
        p,
        certify_help="also certify every model, in the same tasks: ibp (IBP-verified accuracy "
        "at --eps, L-inf) or smoothing (randomized smoothing's certified accuracy at --radius, "
        "L2); a model that cannot be certified gets the reason in its row",
        sigma_help="smoothing noise, the same for every model (default 0.5)",
        radius="radius",
    )
    p.add_argument(
        "--cluster",
        metavar="HOST:PORT",
        default=os.environ.get("RAY_ADDRESS") or None,
        help="run the tasks on this Ray cluster (default $RAY_ADDRESS; none: here); needs "
        f"{INSTALL_HINT}",
    )
    add_output_options(p, json_help="write the leaderboard as JSON")
    p.add_argument("--csv", metavar="OUT.csv", help="write one row per model")
    p.add_argument("--html", metavar="OUT.html", help="write a standalone HTML page")
    p.set_defaults(func=cmd_leaderboard)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from advgui.core import leaderboard

    spec = dataset_spec(args)
    cfg = leaderboard.LeaderboardConfig(
        attack=args.attack,
        eps=args.eps,
        n=args.n,
        chunk=args.chunk,
        seed=args.seed,
        params=dict(args.param),
        **certify_options(args),
    ).validate()
    files = leaderboard.model_files(args.models)
    check_outputs(
        [("--json", args.json), ("--csv", args.csv), ("--html", args.html)],
        inputs=[("--models", f) for f in files],
    )
    if args.cluster:  # not installed or not answering: one line, before the dataset is read
        leaderboard.check_cluster(args.cluster)
    dataset = load_data(args)
    bar = progress_bar(args, unit="task")
    try:
        result = leaderboard.run(files, dataset, cfg, cluster=args.cluster, progress=bar)
    finally:
        bar.close()
    result = {"dataset": spec.name, "dataset_sha256": spec.sha256, **result}
    for r in result["refused"]:
        note(args, f"refused {r['file']}: {r['reason']}")
    if args.csv:
        leaderboard.save_csv(result, args.csv)
    if args.html:
        leaderboard.save_html(result, args.html)
    finish(args, result, "\n".join(leaderboard.table_lines(result)))
    return 0
