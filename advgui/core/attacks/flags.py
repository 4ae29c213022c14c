"""AutoAttack's warnings (Croce & Hein 2020, ``flags_doc.md`` of their code): signs that an
evaluation cannot be trusted as it stands, each with the numbers behind it.

- ``randomness``: predictions or logits change between calls on the same images (a randomised
  defense; attack it with EOT, AutoAttack's ``rand`` version);
- ``probabilities``: the model outputs probabilities (or log-probabilities), whose saturated
  softmax stops gradients;
- ``zero-gradients``: the gradient at the start of a white-box attack is exactly zero on some
  images (masking, e.g. a quantised input: use BPDA, trust the black-box attacks);
- ``gradient-masking``: a black-box attack broke images the white-box ones did not (Carlini et
  al. 2019: the white-box figures overstate robustness).

A flag is a plain record: its ``name``, whole-number counts (added up over the chunks of a run)
and a ``message`` written from them by :func:`describe`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Calls compared by the randomness check, and the images it looks at.
RANDOM_CALLS, RANDOM_IMAGES = 5, 250
#: Largest change of the L2-normalised logits between calls still taken as deterministic.
RANDOM_TOLERANCE = 1e-4
#: A black-box attack must lower robust accuracy by more than this share to raise a flag.
BLACK_BOX_MARGIN = 0.002


def describe(flag: dict[str, Any]) -> str:
    """One sentence for people, from the flag's numbers."""
    name = flag.get("name")
    if name == "randomness":
        return (
            f"predictions change between runs: {flag['changed']} of {flag['of']} images were "
            f"classified differently over {RANDOM_CALLS} calls (normalised logits moved by up "
            f"to {flag.get('max_change', 0.0):.2g}); a randomised defense: evaluate it with "
            "version rand (EOT)"
        )
    if name == "probabilities":
        return (
            f"the model outputs {flag.get('outputs', 'probabilities')}: a saturated softmax "
            "stops gradients; attack its logits"
        )
    if name == "zero-gradients":
        return (
            f"zero gradients on {flag['count']} of {flag['of']} images at the start of "
            f"{flag.get('attack', 'a white-box attack')}: gradient-based attacks get no signal "
            "there (e.g. a quantised input); use BPDA, or trust the black-box attacks"
        )
    if name == "gradient-masking":
        n = max(int(flag["n"]), 1)
        before, after = 100 * flag["robust_before"] / n, 100 * flag["robust_after"] / n
        return (
            f"gradient masking suspected: {flag['attack']} ({flag.get('access', 'black-box')}, "
            f"no gradients) broke {flag['broken']} of the {flag['of']} images the white-box "
            f"attacks left (robust accuracy {before:.1f}% -> {after:.1f}%): the white-box "
            "figures overstate robustness"
        )
    return str(flag.get("message", name))


def cascade_text(cascade: list[dict[str, Any]]) -> str:
    """``apgd-ce 52, apgd-t 3, fab-t 0, square 4``: images each attack of a cascade broke."""
    return ", ".join(f"{c.get('attack')} {c.get('broken')}" for c in cascade if isinstance(c, dict))


def make(name: str, **numbers: Any) -> dict[str, Any]:
    flag = {"name": name, **numbers}
    flag["message"] = describe(flag)
    return flag


def merge(lists: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Flags of several chunks: one per name, counts added, largest changes kept."""
    merged: dict[str, dict[str, Any]] = {}
    for flags in lists:
        for flag in flags:
            name = str(flag.get("name"))
            if name not in merged:
                merged[name] = dict(flag)
                continue
            into = merged[name]
            for key, value in flag.items():
                if key.startswith("max_") and isinstance(value, float):
                    into[key] = max(float(into.get(key, value)), value)
                elif isinstance(value, int) and not isinstance(value, bool):
                    into[key] = int(into.get(key, 0)) + value
    for flag in merged.values():
        flag["message"] = describe(flag)
    return list(merged.values())


# --------------------------------------------------------------------------- checks


def randomness(clf: Any, x: np.ndarray, labels: np.ndarray) -> dict[str, Any] | None:
    """Whether repeated calls on the same images disagree (a randomised model)."""
    x, labels = x[:RANDOM_IMAGES], labels[:RANDOM_IMAGES]
    outs = [np.asarray(clf.logits(x), np.float64) for _ in range(RANDOM_CALLS)]
    preds = np.stack([o.argmax(axis=1) for o in outs])
    changed = int((preds != preds[0]).any(axis=0).sum())
    unit = [o / (np.linalg.norm(o, axis=1, keepdims=True) + 1e-10) for o in outs]
    moved = max(float(np.linalg.norm(unit[0] - u, axis=1).max()) for u in unit[1:])
    if changed == 0 and moved <= RANDOM_TOLERANCE:
        return None
    return make("randomness", changed=changed, of=len(x), max_change=moved)


def probabilities(clf: Any, x: np.ndarray) -> dict[str, Any] | None:
    """Whether the model outputs probabilities (as loaded: its softmax was cut out or its log
    taken) or what the attacks differentiate are probabilities or log-probabilities."""
    outputs = str(getattr(clf, "meta", {}).get("outputs", "logits"))
    if outputs != "logits":
        return make("probabilities", outputs=outputs)
    z = np.asarray(clf.logits(x[:RANDOM_IMAGES]), np.float64)
    if z.min() > -1e-5 and z.max() < 1 + 1e-5 and np.allclose(z.sum(axis=1), 1.0, atol=1e-5):
        return make("probabilities", outputs="probabilities")
    lse = np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)) + z.max(axis=1)
    if z.max() <= 1e-5 and np.allclose(lse, 0.0, atol=1e-3):
        return make("probabilities", outputs="log-probabilities")
    return None


def zero_gradients(attack: str, zero: np.ndarray) -> dict[str, Any] | None:
    count = int(np.count_nonzero(zero))
    if count == 0:
        return None
    return make("zero-gradients", attack=attack, count=count, of=len(zero))


def black_box_beats(cascade: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """A flag for each black-box attack of a cascade that broke images left by white-box
    attacks that ran before it (by more than :data:`BLACK_BOX_MARGIN` of all images)."""
    out = []
    white_ran = False
    for rec in cascade:
        if rec["access"] == "white-box":
            white_ran = white_ran or rec["attacked"] > 0
            continue
        if white_ran and rec["broken"] > BLACK_BOX_MARGIN * n:
            before = rec["robust_after"] + rec["broken"]
            out.append(
                make(
                    "gradient-masking",
                    attack=rec["attack"],
                    access=rec["access"],
                    broken=rec["broken"],
                    of=rec["attacked"],
                    n=n,
                    robust_before=before,
                    robust_after=rec["robust_after"],
                )
            )
    return out
