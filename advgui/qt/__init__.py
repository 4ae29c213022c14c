"""Qt layer: shows and drives the Qt-free core; never computes results itself."""
