"""APGD and FAB on real MNIST: the paper's schedule, the DLR loss, ART 1.20's APGD on the same
model and images, FAB's projection and its minimal examples.

APGD-CE against ART's ``AutoProjectedGradientDescent``: 200 test images, eps 0.1 (a budget
where about a third of the images survive, so the comparison means something), 100
iterations, one random start on both sides, ART's initial step set to the paper's 2 eps. ART
differs in two details (it keeps the last iterate rather than the best adversarial one, and
its checkpoint counts improvements over the best loss); the robust accuracies must still agree
within 1 point.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from advgui.core.attacks import make_attack
from advgui.core.attacks.apgd import checkpoints, dlr, dlr_targeted
from advgui.core.tfimport import tf


@pytest.fixture(scope="module")
def clean(mnist, trained_cnn):
    x, y = mnist.x_test[:120], mnist.y_test[:120]
    ok = trained_cnn.predict(x) == y
    return x[ok][:60], y[ok][:60]


def test_checkpoints_are_the_papers():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), for 100 iterations.
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    ours = checkpoints(100)
    assert [i + 1 for i, _ in ours] == [round(100 * q) for q in p[1:]]
    assert [length for _, length in ours] == [
        round(100 * (b - a)) for a, b in itertools.pairwise(p)
    ]
    assert checkpoints(10)[0] == (1, 2) and all(length >= 1 for _, length in checkpoints(3))


def test_dlr_ignores_the_scale_of_the_logits(trained_cnn, clean):
    t = tf()
    x, y = clean
    z = t.constant(trained_cnn.logits(x[:20]))
    yt = t.constant(y[:20].astype(np.int64))
    target = t.constant(((y[:20] + 1) % 10).astype(np.int64))
    for loss in (lambda z: dlr(t, z, yt), lambda z: dlr_targeted(t, z, yt, target)):
        assert np.allclose(loss(z).numpy(), loss(1000.0 * z).numpy(), rtol=1e-4, atol=1e-6)
    ce = t.nn.sparse_softmax_cross_entropy_with_logits(labels=yt, logits=z).numpy()
    ce_big = t.nn.sparse_softmax_cross_entropy_with_logits(labels=yt, logits=1000.0 * z).numpy()
    assert (ce_big < 1e-6).mean() > 0.9 and (ce > 1e-6).mean() > 0.9  # CE saturates, DLR not
    assert np.all(dlr(t, z, yt).numpy() < 0)  # correctly classified: negative DLR


def test_apgd_ce_robust_accuracy_matches_art(trained_cnn, mnist):
    from art.attacks.evasion import AutoProjectedGradientDescent
    from art.estimators.classification import TensorFlowV2Classifier

    from advgui.core.tfimport import keras

    x, y = mnist.x_test[:200], mnist.y_test[:200]
    res = make_attack("apgd-ce", eps=0.1, steps=100)(trained_cnn, x, labels=y)
    ours = res.summary()["robust_accuracy"]
    est = TensorFlowV2Classifier(
        trained_cnn.logits_model, nb_classes=10, input_shape=(28, 28, 1),
        loss_object=keras().losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )  # fmt: skip
    np.random.seed(0)
    ref = AutoProjectedGradientDescent(
        est, norm=np.inf, eps=0.1, eps_step=0.2, max_iter=100, nb_random_init=1,
        batch_size=200, loss_type="cross_entropy", verbose=False,
    ).generate(x, y=y)  # fmt: skip
    theirs = trained_cnn.accuracy(ref, y)
    assert 0.1 < theirs < 0.9  # a budget where the comparison means something
    assert abs(ours - theirs) <= 0.01, (ours, theirs)
    assert res.linf.max() <= 0.1 + 1e-5 and res.details.queries.max() == 101


def test_apgd_variants_norms_goals_and_restarts(trained_cnn, clean):
    x, y = clean
    ce = make_attack("apgd-ce", eps=0.1, steps=30)(trained_cnn, x, labels=y)
    more = make_attack("apgd-ce", eps=0.1, steps=30, restarts=3)(trained_cnn, x, labels=y)
    # Restarts run only on the images still robust: never fewer broken than one run.
    assert np.all(more.success >= ce.success) and more.steps.max() <= 90
    assert ce.details.zero_gradient.dtype == bool and not ce.details.zero_gradient.any()
    l2 = make_attack("apgd-dlr", eps=1.5, norm="l2", steps=30)(trained_cnn, x, labels=y)
    assert l2.l2.max() <= 1.5 + 1e-4 and l2.success.mean() > 0.3
    tgt = make_attack("apgd-t", eps=0.1, steps=30, targets=3)(trained_cnn, x, labels=y)
    assert tgt.success.mean() >= ce.success.mean() - 0.1
    goals = (y + 1) % 10
    aimed = make_attack("apgd-ce", eps=0.3, steps=30)(trained_cnn, x, labels=y, goals=goals)
    assert aimed.success.mean() > 0.8 and np.array_equal(aimed.success, aimed.pred_after == goals)


def test_box_projection_is_the_smallest_change():
    """The change reaches the hyperplane inside the box and has the optimum's form: every
    coordinate moves towards the plane by min(mu, room) (L-inf) or min(mu |w|, room) (L2) for
    one mu; since w.d grows with mu, nothing smaller reaches the plane. Random feasible
    changes are never smaller."""
    from advgui.core.attacks.fab import box_projection

    t = tf()
    rng = np.random.default_rng(0)
    n, d = 64, 50
    x = rng.uniform(0, 1, (n, d)).astype(np.float32)
    w = rng.normal(size=(n, d)).astype(np.float32)
    w[::4, :10] = 0.0  # some coordinates the plane ignores
    b = (w * x).sum(axis=1) + rng.normal(scale=1.0, size=n).astype(np.float32)
    for norm in ("linf", "l2"):
        delta = box_projection(t, t.constant(x), t.constant(w), t.constant(b), norm).numpy()
        y = x + delta
        reach = (w * y).sum(axis=1) - b
        room = np.where(np.sign(w) * np.sign(b - (w * x).sum(axis=1))[:, None] > 0, 1 - x, x)
        full = np.abs(w) * room
        feasible = full.sum(axis=1) >= np.abs(b - (w * x).sum(axis=1))
        assert np.all(y >= -1e-6) and np.all(y <= 1 + 1e-6)
        assert np.abs(reach[feasible]).max() < 1e-3
        assert np.all(delta[w == 0] == 0)
        size = np.abs(delta)
        mu = size.max(axis=1) if norm == "linf" else (size / np.maximum(np.abs(w), 1e-12)).max(1)
        cap = mu[:, None] if norm == "linf" else mu[:, None] * np.abs(w)
        ok = feasible[:, None] & (w != 0)
        assert np.allclose(size[ok], np.minimum(cap, room)[ok], atol=2e-5)
        # Random changes that reach the plane inside the box are larger.
        own = size.max(axis=1) if norm == "linf" else np.sqrt((delta**2).sum(axis=1))
        for _ in range(20):
            r = rng.uniform(-1, 1, (n, d)).astype(np.float32) * (w != 0)
            r = np.clip(x + r, 0, 1) - x
            c = b - (w * x).sum(axis=1)
            scale = c / np.where(np.abs((w * r).sum(axis=1)) > 1e-6, (w * r).sum(axis=1), np.inf)
            good = (scale > 0) & (scale <= 1) & feasible
            r = r * scale[:, None]
            other = np.abs(r).max(axis=1) if norm == "linf" else np.sqrt((r**2).sum(axis=1))
            assert np.all(other[good] >= own[good] - 1e-5)


def test_fab_finds_small_examples_and_fab_t_stops_within_eps(trained_cnn, clean):
    x, y = clean[0][:30], clean[1][:30]
    fab = make_attack("fab", steps=60)(trained_cnn, x, labels=y)
    assert fab.success.mean() > 0.9
    assert np.allclose(fab.details.min_norm[fab.success], fab.linf[fab.success], atol=1e-5)
    # Minimal: shrinking the change by a fifth leaves most images correctly classified.
    shrunk = x + 0.8 * (fab.x_adv - x)
    assert (trained_cnn.predict(shrunk) == y).mean() > 0.6
    # APGD at FAB's median norm breaks about half the images, as FAB does there.
    median = float(np.median(fab.linf[fab.success]))
    apgd = make_attack("apgd-ce", eps=median, steps=50)(trained_cnn, x, labels=y)
    assert 0.25 <= apgd.success.mean() <= 0.9
    tight = make_attack("fab-t", steps=60, targets=2, bound=0.08)(trained_cnn, x, labels=y)
    within = tight.success & (tight.linf <= 0.08 + 1e-5)
    free = make_attack("fab-t", steps=60, targets=2)(trained_cnn, x, labels=y)
    assert within.sum() >= (free.success & (free.linf <= 0.08 + 1e-5)).sum() - 2
    l2 = make_attack("fab-t", steps=60, targets=1, norm="l2")(trained_cnn, x, labels=y)
    assert l2.success.mean() > 0.8 and np.median(l2.l2[l2.success]) < 3.0
