"""AutoAttack (Croce & Hein, ICML 2020): the field's reference robustness evaluation.

A fixed ensemble of parameter-free attacks, each run only on the images the earlier ones did
not break; an image is robust if it survives all. The versions, as in the reference code:

- ``standard``: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5,000 queries);
- ``plus``: APGD-CE and APGD-DLR with 5 restarts, FAB with 5 restarts, Square, APGD-T, FAB-T;
- ``rand`` (randomised defenses): APGD-CE and APGD-DLR with 20 EOT samples per gradient.

The result keeps the cascade (each attack: images it ran on, images it broke, seconds,
queries) and AutoAttack's warnings (:mod:`.flags`), among them the one that matters most
here: a black-box attack (Square) breaking images the white-box ones left is the mark of
gradient masking.

The attacks are the registered ones (:mod:`.apgd`, :mod:`.fab`, :mod:`.square`), run through
their own specs; a minimum-norm attack's result is projected onto the eps ball before it is
judged.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from advgui.core.attacks import flags
from advgui.core.attacks import spec as sp
from advgui.core.attacks.base import ATTACKS, Attack, Details, Outcome, Task, make_attack, register
from advgui.core.attacks.engine import project_np
from advgui.core.attacks.spec import FIXED_BUDGET, WHITE_BOX
from advgui.core.progress import Progress

VERSIONS = ("standard", "plus", "rand")


def plan(version: str, queries: int = 5000, eot: int = 20) -> list[tuple[str, dict[str, Any]]]:
    """The attacks of a version, in order, with the parameters AutoAttack gives them (each
    gradient attack runs 100 iterations unless ``steps`` says otherwise)."""
    if version == "standard":
        return [
            ("apgd-ce", {"restarts": 1}),
            ("apgd-t", {"restarts": 1, "targets": 9}),
            ("fab-t", {"restarts": 1, "targets": 9}),
            ("square", {"queries": queries, "restarts": 1}),
        ]
    if version == "plus":
        return [
            ("apgd-ce", {"restarts": 5}),
            ("apgd-dlr", {"restarts": 5}),
            ("fab", {"restarts": 5}),
            ("square", {"queries": queries, "restarts": 1}),
            ("apgd-t", {"restarts": 1, "targets": 9}),
            ("fab-t", {"restarts": 1, "targets": 9}),
        ]
    return [("apgd-ce", {"restarts": 1, "eot": eot}), ("apgd-dlr", {"restarts": 1, "eot": eot})]


@register
class AutoAttack(Attack):
    """AutoAttack: APGD-CE, APGD-T, FAB-T and Square in cascade, with its warning flags."""

    name: ClassVar[str] = "autoattack"
    supports_targeted: ClassVar[bool] = False
    spec: ClassVar[tuple[sp.Param, ...]] = (
        sp.Param("eps", 0.3, lo=0.0, hi=28.0, label="Epsilon",
                 help="perturbation budget (L-inf: per pixel; L2: whole image)"),
        sp.Param("version", "standard", choices=VERSIONS, label="Version",
                 help="standard; plus (more restarts, untargeted FAB and APGD-DLR); rand "
                 "(randomised defenses: EOT)"),
        sp.norm(),
        sp.Param("queries", 5000, lo=1, hi=1_000_000, integer=True, label="Square queries",
                 advanced=True, help="queries of the Square Attack per image"),
        sp.Param("steps", 100, lo=1, hi=100_000, integer=True, label="Steps", advanced=True,
                 help="iterations of each gradient attack (APGD, FAB)"),
        sp.Param("eot", 20, lo=1, hi=1000, integer=True, label="EOT samples (rand)",
                 advanced=True, help="gradients averaged per step in the rand version"),
        sp.Param("checks", True, label="Warning checks", advanced=True,
                 help="check for randomness, probabilities and zero gradients"),
        sp.seed(0),
    )  # fmt: skip

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        hi = 1.0 if params["norm"] == "linf" else 28.0
        params["eps"] = sp.eps(hi=hi).check(params["eps"])
        return params

    def members(self, params: dict[str, Any]) -> list[Attack]:
        """The cascade's attacks, built through their specs."""
        out = []
        for name, extra in plan(params["version"], params["queries"], params["eot"]):
            given = {"norm": params["norm"], "seed": params["seed"], **extra}
            if ATTACKS[name].param("steps") is not None:
                given["steps"] = params["steps"]
            if ATTACKS[name].param("bound") is not None:
                given["bound"] = params["eps"]  # minimum-norm: done once within eps
            out.append(make_attack(name, **given))
        return out

    def run(self, clf: Any, x: np.ndarray, task: Task) -> Outcome:
        params = task.params
        eps, norm = params["eps"], params["norm"]
        labels = task.labels
        n = len(x)
        found: list[dict[str, Any]] = []
        if params["checks"]:
            if params["version"] != "rand":
                found.append(flags.randomness(clf, x, labels))
            found.append(flags.probabilities(clf, x))
        robust = clf.predict(x) == labels
        best = x.copy()
        queries = np.zeros(n, np.int64)
        cascade: list[dict[str, Any]] = []
        members = self.members(params)
        for j, attack in enumerate(members):
            todo = np.flatnonzero(robust)
            rec = {"attack": attack.name, "access": attack.access, "kind": attack.kind,
                   "attacked": len(todo), "broken": 0, "seconds": 0.0, "queries": 0}  # fmt: skip
            if len(todo) and eps > 0:
                t0 = time.perf_counter()
                res = attack(
                    clf, x[todo], labels=labels[todo],
                    eps=eps if attack.kind == FIXED_BUDGET else None,
                    progress=_share(task, j, len(members), attack.name), cancel=task.cancel,
                )  # fmt: skip
                x_m = res.x_adv
                if attack.kind != FIXED_BUDGET:
                    x_m = project_np(x[todo], x_m, eps, norm)
                broke = clf.predict(x_m) != labels[todo]
                if j == 0:
                    best[todo] = x_m  # the robust images show the first attack's strongest try
                best[todo[broke]] = x_m[broke]
                robust[todo[broke]] = False
                q = res.details.queries
                if q is not None:
                    queries[todo] += q
                    rec["queries"] = int(q.sum())
                rec.update(broken=int(broke.sum()), seconds=time.perf_counter() - t0)
                zero = res.details.zero_gradient
                if params["checks"] and attack.access == WHITE_BOX and zero is not None:
                    found.append(flags.zero_gradients(attack.name, zero))
            rec["robust_after"] = int(robust.sum())
            cascade.append(rec)
        found.extend(flags.black_box_beats(cascade, n))
        # One zero-gradient flag: the attack where most images had none.
        zeros = [f for f in found if f is not None and f["name"] == "zero-gradients"]
        kept = [f for f in found if f is not None and f["name"] != "zero-gradients"]
        if zeros:
            kept.insert(0, max(zeros, key=lambda f: f["count"]))
        return Outcome(best, steps=len(members),
                       details=Details(cascade=cascade, flags=kept, queries=queries))  # fmt: skip


def _share(task: Task, j: int, total: int, name: str) -> Any:
    """Progress of the j-th attack as its share of the whole cascade."""
    if task.progress is None:
        return None

    def report(update: Progress) -> None:
        msg = f"autoattack: {name} ({j + 1} of {total}): {update.message}"
        task.progress(Progress(j + update.fraction, total, msg, dict(update.info)))

    return report
