"""Imports every module that registers an attack (each adds itself to ``ATTACKS``)."""

from advgui.core.attacks import cw, deck, deepfool, fgsm, jsma, pgd  # noqa: F401
