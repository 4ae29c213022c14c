"""Certified accuracy curves out of an evaluation result, for plots (Qt-free)."""

from __future__ import annotations

from typing import Any


def certified_curves(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One curve per certified entry: ``radii`` (L2 for smoothing, L-inf eps for IBP),
    ``accuracy``, ``norm``, ``label``, ``consistent`` and a one-line ``caption``. Entries
    without certified figures (or with malformed ones, from a file) are skipped."""
    out = []
    for entry in result.get("results", []):
        cert = entry.get("certified") if isinstance(entry, dict) else None
        if not isinstance(cert, dict):
            continue
        ibp = cert.get("method") == "ibp"
        radii = cert.get("eps" if ibp else "radii")
        acc = cert.get("verified_accuracy" if ibp else "certified_accuracy")
        if not isinstance(radii, list) or not isinstance(acc, list) or len(radii) != len(acc):
            continue
        label = str(entry.get("label", "model"))
        if ibp:
            caption = f"{label}: IBP-verified (L-inf)"
        else:
            caption = (
                f"{label}: smoothing sigma {cert.get('sigma')}, n {cert.get('n_samples')}, "
                f"alpha {cert.get('alpha')} (L2)"
            )
        out.append(
            {
                "label": f"{label} ({'IBP' if ibp else 'smoothing'})",
                "norm": "linf" if ibp else "l2",
                "radii": [float(r) for r in radii],
                "accuracy": [float(a) for a in acc],
                "consistent": bool(cert.get("consistent", True)),
                "caption": caption,
            }
        )
    return out
