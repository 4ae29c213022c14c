"""Reusable widgets; each module belongs to the tab named in its prefix."""
