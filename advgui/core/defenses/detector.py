"""The feature-squeezing detector (Xu, Evans and Qi, NDSS 2018).

An input is flagged as adversarial when squeezing it changes the model's prediction a lot: the
score is the largest L1 distance between the softmax of the original and of each squeezed
version. The threshold is the (1 - FPR) quantile of the scores of clean images, so that about
FPR of legitimate inputs get flagged: the user picks the false-positive rate, not a number
without meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from advgui.core.defenses.transforms import TransformSpec, parse_transform, wrap
from advgui.core.errors import ParameterError
from advgui.core.models import Classifier

#: Xu et al.'s best squeezers for MNIST: 1-bit depth and a 2x2 median filter.
DEFAULT_SQUEEZERS = ("squeeze-bits:1", "median:2")


@dataclass
class SqueezeDetector:
    """Scores inputs against ``squeezers``; call :meth:`calibrate` before :meth:`detect`."""

    clf: Classifier
    squeezers: Sequence[str] = DEFAULT_SQUEEZERS
    threshold: float | None = None
    fpr: float | None = None
    _views: list[Classifier] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.squeezers:
            raise ParameterError("the detector needs at least one squeezer", field="squeezers")
        specs: list[tuple[TransformSpec, ...]] = [parse_transform(s) for s in self.squeezers]
        if any(spec.random for group in specs for spec in group):
            raise ParameterError("squeezers must be deterministic (no noise)", field="squeezers")
        self._views = [wrap(self.clf, group) for group in specs]

    def score(self, x: np.ndarray) -> np.ndarray:
        """Per image: max over squeezers of ||softmax(x) - softmax(squeeze(x))||_1."""
        p = self.clf.predict_proba(x)
        dist = [np.abs(p - view.predict_proba(x)).sum(axis=1) for view in self._views]
        return np.max(dist, axis=0)

    def calibrate(self, x_clean: np.ndarray, fpr: float = 0.05) -> float:
        """Set the threshold so that a fraction ``fpr`` of clean images is flagged."""
        if not 0.0 < float(fpr) < 1.0:
            raise ParameterError(
                f"false-positive rate must be between 0 and 1, got {fpr}", field="fpr"
            )
        scores = self.score(x_clean)
        if len(scores) < 1 / fpr:
            raise ParameterError(
                f"{len(scores)} clean images are too few to set a {fpr:.1%} false-positive "
                f"rate (need at least {int(np.ceil(1 / fpr))})",
                field="fpr",
            )
        self.threshold = float(np.quantile(scores, 1.0 - fpr, method="higher"))
        self.fpr = float(fpr)
        return self.threshold

    def detect(self, x: np.ndarray) -> np.ndarray:
        """Boolean per image: flagged as adversarial."""
        if self.threshold is None:
            raise ParameterError("calibrate the detector on clean images first", field="fpr")
        return self.score(x) > self.threshold

    def describe(self) -> dict[str, Any]:
        return {
            "squeezers": list(self.squeezers),
            "threshold": self.threshold,
            "fpr_setting": self.fpr,
        }
