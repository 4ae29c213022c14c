"""Adversarial attacks: one small interface (:mod:`.base`), parameters declared once
(:mod:`.spec`), one engine (:mod:`.engine`); batched, on logits.

Importing this package registers every attack (the modules import TensorFlow only when an
attack runs). ``make_attack(name, **params)`` builds one; ``ATTACKS`` lists them. Adding an
attack is one module here, listed below: it then appears in the Attack tab, ``advgui attack
--method``, the compare view and ``advgui evaluate``.
"""

from advgui.core.attacks import (  # noqa: F401
    apgd,
    autoattack,
    cw,
    deck,
    deepfool,
    fab,
    fgsm,
    hsj,
    jsma,
    pgd,
    square,
)
from advgui.core.attacks.base import ATTACKS, Attack, AttackResult, make_attack, register

__all__ = ["ATTACKS", "Attack", "AttackResult", "make_attack", "register"]
