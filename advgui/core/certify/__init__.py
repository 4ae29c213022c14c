"""Certified robustness: randomized smoothing (L2) and interval bound propagation (L-inf).

Unlike an attack's robust accuracy, which only an attack can lower, a certified figure is a
guarantee: no input within the radius changes the prediction (for smoothing, with probability
1 - alpha). It can therefore never be above an attack's figure on the same model and norm,
which :func:`advgui.core.evaluation.evaluate` checks. Importing this package does not import
TensorFlow.
"""

from advgui.core.certify.ibp import IBPResult, NotVerifiable, verified_accuracy
from advgui.core.certify.smoothing import (
    ABSTAIN,
    DEFAULT_RADII,
    Certificate,
    SmoothingConfig,
    certify,
    lower_confidence_bound,
    parse_radii,
    predict,
)

__all__ = [
    "ABSTAIN",
    "DEFAULT_RADII",
    "Certificate",
    "IBPResult",
    "NotVerifiable",
    "SmoothingConfig",
    "certify",
    "lower_confidence_bound",
    "parse_radii",
    "predict",
    "verified_accuracy",
]
