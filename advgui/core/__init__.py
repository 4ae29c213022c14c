"""Qt-free core: data, models, training, attacks, defenses, evaluation, export.

Nothing here imports Qt. TensorFlow is imported lazily (see :mod:`advgui.core.tfimport`) so that
the command line and the window start fast.
"""
