"""Safety: nothing is ever unpickled, models load in Keras safe mode, downloads only over HTTPS
from the listed mirrors, and ordinary work (train, attack, evaluate, export) uses no network."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "advgui"


PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}


def _name(node: ast.AST) -> str:
    """Dotted name of a call target: ``np.load``, ``k.saving.load_model``, ``load``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


def unsafe_uses(source: str, filename: str = "<src>") -> list[str]:
    """Every place in ``source`` that could unpickle or load a model unsafely."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name in PICKLERS]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in PICKLERS:
                found.append(f"{where} from {node.module} import ...")
            if node.module == "numpy" and any(a.name == "load" for a in node.names):
                found.append(f"{where} from numpy import load (use np.load(allow_pickle=False))")
        elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
            if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                found.append(f"{where} allow_pickle not False")
        elif isinstance(node, ast.keyword) and node.arg == "safe_mode":
            if not (isinstance(node.value, ast.Constant) and node.value.value is True):
                found.append(f"{where} safe_mode not True")
        elif isinstance(node, ast.Call):
            name = _name(node.func)
            last = name.rsplit(".", 1)[-1]
            if name in ("np.load", "numpy.load") and _kw(node, "allow_pickle") is not False:
                found.append(f"{where} {name} without allow_pickle=False")
            if last in ("read_pickle", "loads") and name.split(".")[0] in PICKLERS | {"pd"}:
                found.append(f"{where} {name}")
            if name in ("torch.load",):
                found.append(f"{where} {name}")
            keras_loader = last == "load_model" and any(
                p in name for p in ("saving", "keras", "models.load_model")
            )
            if keras_loader and name != "models.load_model" and _kw(node, "safe_mode") is not True:
                found.append(f"{where} {name} without safe_mode=True")
            if last == "enable_unsafe_deserialization":
                found.append(f"{where} {name}")
    return found


def test_scanner_catches_what_it_should():
    bad = """
import pickle
from joblib import load
import numpy as np
np.load(f)
np.load(f, allow_pickle=True)
keras.saving.load_model(p)
k.models.load_model(p, safe_mode=False)
keras.config.enable_unsafe_deserialization()
"""
    lines = {int(hit.split(":")[1].split()[0]) for hit in unsafe_uses(bad)}
    assert lines == set(range(2, 10)) - {4}, unsafe_uses(bad)  # all but "import numpy"
    good = """
import numpy as np
np.load(f, allow_pickle=False)
k.saving.load_model(p, compile=False, safe_mode=True)
models.load_model(p)
"""
    assert unsafe_uses(good) == []


def test_package_never_unpickles_and_loads_models_safely():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    found = [hit for f in files for hit in unsafe_uses(f.read_text(encoding="utf-8"), str(f))]
    assert not found, "\n".join(found)
