"""Mixed precision, one setting for training and attacks: ``float32`` (the default) or ``mixed``.

``mixed`` runs the forward and backward passes under the Keras dtype policy that
:mod:`advgui.core.tuning` chose for this device: ``mixed_float16`` on a GPU (with Keras's dynamic
loss scaling in training), ``mixed_bfloat16`` on a CPU with bf16 instructions (AMX,
AVX512-BF16, ARM BF16); it is refused on a CPU without them, where bfloat16 is emulated and
slower than float32.

The work runs on a *clone* of the model under that policy (:func:`mixed_clone`): its variables
stay float32 (Keras keeps them so under every mixed policy) and its output is cast back to
float32, so losses, margins and softmaxes are float32. The model itself never changes dtype:
training copies the clone's weights back, so the saved file is a plain float32 model any
float32-only consumer loads; attacks keep their iterate, projection and final judging in
float32, and :func:`run_attack` re-checks a mixed attack's images with the float32 model, whose
figures are the reported ones. The attacks' opt-in bfloat16 gradients (``precision="bfloat16"``,
``engine.bfloat16_view``) use the same clone.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from advgui.core.errors import ParameterError

log = logging.getLogger(__name__)

PRECISIONS = ("float32", "mixed")
#: Keras dtype policies a clone may run under.
POLICIES = ("mixed_float16", "mixed_bfloat16")
_logged: set[str] = set()


def check(precision: Any) -> str:
    """``precision`` as one of :data:`PRECISIONS` (ParameterError otherwise); no TensorFlow."""
    text = str(precision).strip().lower()
    if text not in PRECISIONS:
        raise ParameterError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}",
            field="precision",
        )
    return text


def availability(settings: Any = None) -> tuple[str | None, str]:
    """(policy or None, why) for ``mixed`` here; from the early settings (no TensorFlow
    import) unless ``settings`` is given: what a form shows before any work."""
    from advgui.core import tuning

    chosen = settings if settings is not None else tuning.early_settings()
    return chosen.mixed_policy, chosen.reasons.get("mixed", "")


def offered(settings: Any = None) -> tuple[list[tuple[str, str]], str]:
    """What a form offers: (label, value) per choice (mixed only where this device has it)
    and the tooltip saying why."""
    name, why = availability(settings)
    items = [("float32", "float32")]
    if name is not None:
        items.append((f"mixed ({name})", "mixed"))
        return items, f"Training and attacks in {name} (figures re-checked in float32): {why}"
    return items, f"Mixed precision: {why}"


def policy(precision: str) -> str:
    """The Keras dtype policy ``precision`` runs under on this device: ``"float32"``,
    ``"mixed_float16"`` or ``"mixed_bfloat16"`` (logged once); a one-line ParameterError where
    mixed is refused."""
    from advgui.core import tuning

    if check(precision) == "float32":
        return "float32"
    chosen = tuning.settings()
    name, why = availability(chosen)
    if name is None:
        raise ParameterError(
            f"mixed precision is not available on {chosen.device}: {why.removeprefix('refused: ')}",
            field="precision",
        )
    if name not in _logged:
        _logged.add(name)
        log.info("precision mixed: %s on %s (%s)", name, chosen.device, why)
    return name


def mixed_clone(model: Any, dtype_policy: str) -> Any:
    """A copy of the Keras logits model ``model`` computing under ``dtype_policy``, with its
    current weights (float32 variables) and float32 outputs (Keras's advice: the last
    activation in float32). Raises what Keras raises for a layer it cannot rebuild."""
    from advgui.core.tfimport import keras

    if dtype_policy not in POLICIES:
        raise ParameterError(f"unknown dtype policy {dtype_policy!r}", field="precision")
    k = keras()

    def clone(layer: Any) -> Any:
        cfg = layer.get_config()
        cfg["dtype"] = dtype_policy
        return layer.__class__.from_config(cfg)

    inner = k.models.clone_model(model, clone_function=clone, recursive=True)
    inner.set_weights(model.get_weights())
    inputs = k.Input(shape=(28, 28, 1), name="image")
    out = k.layers.Activation("linear", dtype="float32", name="float32_logits")(inner(inputs))
    return k.Model(inputs, out, name=f"{model.name}_{dtype_policy}")


def mixed_view(clf: Any, dtype_policy: str) -> Any:
    """The classifier's logits model cloned under ``dtype_policy`` with its *current* weights
    (copied on every call: a model trained further is never attacked through a stale copy);
    built once per model, kept in its compile cache; None (logged once) when it cannot be
    cloned, e.g. a custom layer."""
    from advgui.core.attacks.engine import compiled, log_once

    model = clf.logits_model

    def build() -> Any:
        try:
            return mixed_clone(model, dtype_policy)
        except Exception as err:  # Keras raises many types for layers it cannot rebuild
            log_once(f"{dtype_policy}-{model.name}", "model %s: float32 (no %s copy: %s)",
                     model.name, dtype_policy, err)  # fmt: skip
            return None

    copy = compiled(clf, (dtype_policy + "-copy", id(model)), build)
    if copy is not None:
        copy.set_weights(model.get_weights())
    return copy


def mixed_classifier(clf: Any, dtype_policy: str) -> Any:
    """``clf`` with its logits computed under ``dtype_policy`` (see :func:`mixed_view`), kept
    so that attacks on it reuse their traces; None when the model cannot be cloned."""
    from advgui.core.attacks.engine import compiled
    from advgui.core.models import Classifier

    view = mixed_view(clf, dtype_policy)
    if view is None:
        return None
    return compiled(
        clf,
        ("mixed-classifier", dtype_policy, id(view)),
        lambda: Classifier(clf.model, dict(clf.meta), logits_model=view),
    )


def recheck(result: Any, clf: Any, dtype_policy: str) -> tuple[Any, dict[str, Any]]:
    """A mixed-precision attack's result judged again by the float32 classifier ``clf``: the
    float32 result (its figures are the reported ones) and the agreement record (``flips``:
    adversarial images whose predicted class differs between the precisions; where any do,
    both robust accuracies and success rates)."""
    from advgui.core.attacks.base import finalize

    checked = finalize(
        clf,
        method=result.method,
        params=result.params,
        x=result.x,
        x_adv=result.x_adv,
        labels=result.labels,
        goals=result.goals,
        probs_before=clf.predict_proba(result.x),
        steps=result.steps,
        seconds=result.seconds,
        cost_history=result.cost_history,
        # What the gradients ran in: the mixed policy (PGD's own "bfloat16" stays as it is).
        details=dataclasses.replace(
            result.details,
            precision=dtype_policy
            if result.details.precision in (None, "float32")
            else result.details.precision,
        ),
    )
    flips = int(np.sum(result.pred_after != checked.pred_after))
    record: dict[str, Any] = {"policy": dtype_policy, "flips": flips, "agree": flips == 0}
    if flips:
        low, full = result.summary(), checked.summary()
        record.update(
            robust_accuracy_mixed=low["robust_accuracy"],
            robust_accuracy_float32=full["robust_accuracy"],
            success_rate_mixed=low["success_rate"],
            success_rate_float32=full["success_rate"],
        )
    return checked, record


def _at(precision: str, clf: Any, run: Any) -> tuple[Any, dict[str, Any] | None]:
    """``run(classifier)`` at ``precision``: on ``clf`` in float32, else on its mixed clone
    and re-checked by ``clf``. A model that cannot be cloned runs in float32, and the record
    says so (``policy``: "float32")."""
    name = policy(precision)
    if name == "float32":
        return run(clf), None
    low = mixed_classifier(clf, name)
    if low is None:
        return run(clf), {"policy": "float32", "flips": 0, "agree": True, "note": "not clonable"}
    return recheck(run(low), clf, name)


def run_attack(
    attack: Any,
    clf: Any,
    x: np.ndarray,
    labels: np.ndarray | None,
    *,
    precision: str = "float32",
    **kwargs: Any,
) -> tuple[Any, dict[str, Any] | None]:
    """:func:`~advgui.core.attacks.batch.run_batch` at ``precision``: (the float32-judged
    result, the agreement record of :func:`recheck`, None in float32)."""
    from advgui.core.attacks.batch import run_batch

    return _at(precision, clf, lambda c: run_batch(attack, c, x, labels, **kwargs))


def call_attack(
    attack: Any, clf: Any, x: np.ndarray, *, precision: str = "float32", **kwargs: Any
) -> tuple[Any, dict[str, Any] | None]:
    """``attack(clf, x, **kwargs)`` (one batch, the attack's own progress) at ``precision``,
    as :func:`run_attack`."""
    return _at(precision, clf, lambda c: attack(c, x, **kwargs))


def describe(record: dict[str, Any] | None) -> str:
    """The summary line's words for an agreement record ("" in float32)."""
    if not record:
        return ""
    if record["policy"] == "float32":
        return "; mixed precision unavailable for this model: float32"
    if record["agree"]:
        return f"; {record['policy']} attack, float32 re-check agrees"
    return (
        f"; {record['policy']} attack DISAGREES with the float32 re-check on "
        f"{record['flips']} image(s): robust accuracy {100 * record['robust_accuracy_mixed']:.1f}% "
        f"mixed vs {100 * record['robust_accuracy_float32']:.1f}% float32 (reported)"
    )
