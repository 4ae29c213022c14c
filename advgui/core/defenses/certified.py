"""Training recipes for certification: Gaussian noise (for randomized smoothing) and IBP.

Both are batch losses for the one training loop (:func:`advgui.core.fit.fit`):

- ``noise`` (Cohen et al. 2019): the base classifier is trained on ``x + N(0, sigma^2)``, the
  distribution the smoothed classifier queries it on (no clipping, as in the reference).
- ``ibp`` (Gowal et al. 2019): ``kappa CE(f(x)) + (1 - kappa) CE(worst-case logits)``, the
  worst case being the interval bounds of the logit differences over the L-inf box. As in
  DeepMind's schedules, eps is 0 during a short warm-up, then grows linearly to its target
  while kappa falls linearly from 1 to 0.5 over the same steps; kappa is therefore read off the
  scheduled eps (``1 - 0.5 eps / eps_max``) and needs nothing of the loop beyond eps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from advgui.core.tfimport import tf


def _ce(z: Any, y: Any) -> Any:
    return tf().nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z)


@dataclass(frozen=True)
class NoiseLoss:
    """Cross-entropy on Gaussian-noised images (the noise drawn before the tape)."""

    sigma: float

    def eps_at(self, step: int, total: int) -> float:
        return 0.0

    def attack(self, model: Any, x: Any, y: Any, eps: Any) -> Any:
        t = tf()
        return x + self.sigma * t.random.normal(t.shape(x))

    def batch_loss(self, model: Any, x: Any, x_adv: Any, y: Any) -> tuple[Any, Any, Any]:
        t = tf()
        z = model(x_adv, training=True)
        return t.reduce_mean(_ce(z, y)), z, y


@dataclass(frozen=True)
class IBPLoss:
    """IBP's loss; ``warmup`` and ``ramp`` are fractions of the training steps."""

    eps: float
    warmup: float = 0.2
    ramp: float = 0.5
    kappa_end: float = 0.5

    def eps_at(self, step: int, total: int) -> float:
        start = int(self.warmup * total)
        length = max(1, int(self.ramp * total))
        if step < start:
            return 0.0
        return self.eps * min(1.0, (step - start + 1) / length)

    def attack(self, model: Any, x: Any, y: Any, eps: Any) -> Any:
        return tf().reshape(eps, [1])  # carries the scheduled eps into the loss

    def batch_loss(self, model: Any, x: Any, x_adv: Any, y: Any) -> tuple[Any, Any, Any]:
        from advgui.core.certify import ibp

        t = tf()
        eps = x_adv[0]
        steps = ibp.chain(model)
        z = model(x, training=True)
        lo, hi = ibp.box(x, eps)
        worst = ibp.margin_upper(steps, lo, hi, t.cast(y, t.int32))
        frac = eps / self.eps if self.eps > 0 else t.constant(0.0)
        kappa = 1.0 - (1.0 - self.kappa_end) * frac
        loss = kappa * t.reduce_mean(_ce(z, y)) + (1.0 - kappa) * t.reduce_mean(_ce(worst, y))
        return loss, z, y
