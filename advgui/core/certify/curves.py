"""Certified accuracy curves out of an evaluation result, for plots (Qt-free)."""

from __future__ import annotations

from typing import Any


def certified_curves(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One curve per certified entry: ``radii`` (L2 for smoothing, L-inf eps for IBP),
    ``accuracy``, ``norm``, ``label``, ``consistent``, a one-line ``caption`` and, for
    smoothing checked by an attack, ``empirical`` (its accuracy at each radius; else None).
    Entries without certified figures (running or stopped, or malformed ones from a file) are
    skipped."""
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
        emp = cert.get("empirical")
        empirical = emp.get("accuracy") if isinstance(emp, dict) and not ibp else None
        if not isinstance(empirical, list) or len(empirical) != len(radii):
            empirical = None
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
                "empirical": None if empirical is None else [float(a) for a in empirical],
                "consistent": bool(cert.get("consistent", True)),
                "caption": caption,
            }
        )
    return out


def stopped_certifications(result: dict[str, Any] | None) -> list[str]:
    """Labels of the entries whose certification was cut short (stopped or failed)."""
    out = []
    for entry in (result or {}).get("results", []):
        cert = entry.get("certified") if isinstance(entry, dict) else None
        if isinstance(cert, dict) and cert.get("status") in ("stopped", "failed"):
            out.append(f"{entry.get('label', 'model')} ({cert['status']})")
    return out
