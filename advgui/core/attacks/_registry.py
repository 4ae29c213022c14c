"""Imports every module that registers an attack (each adds itself to ``ATTACKS``)."""
