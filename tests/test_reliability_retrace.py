"""Long sessions: attacking the same model again with fresh attack objects (as the Attack tab
does on every Run) must not retrace any TensorFlow function; a sweep over many settings keeps
a bounded number of compiled functions per model. (Figures: benchmarks/bench_long_session.py.)
"""

from __future__ import annotations

import collections

import pytest

RUNS = [
    ("fgsm", {"eps": 0.2}, None),
    ("pgd", {"eps": 0.2, "steps": 3}, None),
    ("bim", {"eps": 0.1, "steps": 3}, None),
    ("targeted", {"steps": 5, "lam": 0.05}, 3),
    ("deepfool", {"steps": 3}, None),
    ("cw", {"steps": 3, "search_steps": 1}, 2),
    ("jsma", {}, 5),
]


@pytest.fixture
def traces(monkeypatch):
    from advgui.core.tfimport import tf

    tf()
    from tensorflow.python.eager.polymorphic_function import polymorphic_function as pf

    counts: collections.Counter[str] = collections.Counter()
    original = pf.Function.__call__

    def call(self, *args, **kwargs):
        before = self.experimental_get_tracing_count()
        try:
            return original(self, *args, **kwargs)
        finally:
            counts[self._name] += self.experimental_get_tracing_count() - before

    monkeypatch.setattr(pf.Function, "__call__", call)
    return counts


def test_fresh_attack_objects_do_not_retrace(trained_cnn, mnist, traces):
    from advgui.core.attacks import ATTACKS, make_attack

    runs = [r for r in RUNS if r[0] in ATTACKS]
    x, y = mnist.x_test[:2], mnist.y_test[:2]
    for name, params, goal in runs:  # warm-up: each compiles (at most) once
        make_attack(name, **params)(trained_cnn, x, labels=y, goals=goal)
    warm = sum(traces.values())
    for round_ in range(3):
        for name, params, goal in runs:
            k = 2 * round_ + 2
            xb, yb = mnist.x_test[k : k + 2], mnist.y_test[k : k + 2]
            make_attack(name, **params)(trained_cnn, xb, labels=yb, goals=goal)
    assert sum(traces.values()) == warm, dict(traces)


def test_compiled_cache_is_bounded_per_model_and_keyed_by_settings():
    from advgui.core.attacks.engine import MAX_COMPILED, compiled

    class Model:  # stands in for a Classifier: the cache lives on the object
        cache = None

    model, builds = Model(), []

    def get(eps):
        return compiled(model, ("attack", eps), lambda: builds.append(eps) or f"fn{eps}")

    assert get(0.1) == "fn0.1" and get(0.1) == "fn0.1" and builds == [0.1]  # same key: reused
    for i in range(MAX_COMPILED + 4):
        get(i)
    assert len(model.cache) == MAX_COMPILED
    n = len(builds)
    get(MAX_COMPILED + 3)  # most recent: kept
    assert len(builds) == n
    get(0)  # oldest: evicted, built again
    assert len(builds) == n + 1
