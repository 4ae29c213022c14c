"""advgui: a desktop workbench for adversarial machine learning on MNIST."""

__version__ = "0.1.0"
