"""Adversarial attacks: one small interface (see :mod:`.base`), batched, on logits.

``make_attack(name, **params)`` builds any registered attack; ``ATTACKS`` lists them.
"""

from advgui.core.attacks.base import ATTACKS, Attack, AttackResult, make_attack, register

__all__ = ["ATTACKS", "Attack", "AttackResult", "make_attack", "register"]
