"""Defenses: defended training, input transformations (with BPDA/EOT views) and a detector.

Importing this package does not import TensorFlow; the functions do, when called.
"""

from advgui.core.defenses.adversarial import (
    DEFENSES,
    DefenseConfig,
    DefenseResult,
    distill,
    held_out_accuracy,
    train_defended,
)
from advgui.core.defenses.detector import DEFAULT_SQUEEZERS, SqueezeDetector
from advgui.core.defenses.transforms import (
    TRANSFORM_KINDS,
    TransformSpec,
    parse_transform,
    transform_label,
    wrap,
)

__all__ = [
    "DEFAULT_SQUEEZERS",
    "DEFENSES",
    "TRANSFORM_KINDS",
    "DefenseConfig",
    "DefenseResult",
    "SqueezeDetector",
    "TransformSpec",
    "distill",
    "held_out_accuracy",
    "parse_transform",
    "train_defended",
    "transform_label",
    "wrap",
]
