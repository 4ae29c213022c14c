"""Imports every module that registers an attack (each adds itself to ``ATTACKS``)."""

from advgui.core.attacks import deck, fgsm  # noqa: F401
