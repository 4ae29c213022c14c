"""FGSM and the deck's two gradient-descent attacks on a trained CNN and real MNIST."""

from __future__ import annotations

import numpy as np
import pytest

from advgui.core.attacks import make_attack
from advgui.core.errors import ParameterError
from advgui.core.progress import Cancelled, CancelToken

GOALS = (2, 3, 6, 8)


def _fours(mnist, clf, n=4):
    """The first ``n`` test images of a 4 that the model classifies as a 4."""
    idx = np.flatnonzero(mnist.y_test == 4)[: 4 * n]
    idx = idx[clf.predict(mnist.x_test[idx]) == 4][:n]
    assert len(idx) == n
    return idx


def test_targeted_defaults_reach_the_decks_goals_with_small_distortion(default_cnn, mnist):
    # On the app's default CNN (about 99.2%), as the deck's claim is about a trained network.
    # On a briefly trained one (1 epoch on 20,000 images) one 4 needs L2 3.4 for goal 6 at 90%,
    # and C&W with the same confidence needs more (3.8): that is the model, not the attack.
    idx = _fours(mnist, default_cnn)
    x = np.repeat(mnist.x_test[idx], len(GOALS), axis=0)
    goals = np.tile(GOALS, len(idx))
    updates = []
    res = make_attack("targeted")(default_cnn, x, labels=4, goals=goals, progress=updates.append)
    conf = res.probs_after[np.arange(len(x)), goals]
    assert (conf >= 0.9).all(), conf
    assert (res.pred_after == goals).all() and res.success.all()
    # Least distortion at 90%: L2 at most 3 from the source image for every pair.
    assert res.l2.max() <= 3.0, res.l2.reshape(-1, len(GOALS))
    # Pixels in [0, 1] and on the 8-bit grid (the quantisation-aware finish).
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    np.testing.assert_allclose(res.x_adv * 255, np.round(res.x_adv * 255), atol=1e-3)
    # Per-step cost of the chosen run for every input; lambda was searched per input.
    assert res.cost_history.shape == (500, len(x)) and np.isfinite(res.cost_history).all()
    assert len(res.extra["lam_tried"]) >= 2 and len(set(res.extra["lam"])) > 1
    done = [u.done for u in updates]
    assert done == sorted(done) and done[-1] == 500 * len(res.extra["lam_tried"])
    assert updates[0].partial.image.shape == (28, 28, 1) and "image" not in updates[0].info
    rec = res.record(0)
    assert rec["goal"] == 2 and len(rec["probs_after"]) == 10 and rec["pred_before"] == 4


def test_noise_attack_reaches_its_goal(trained_cnn):
    goals = np.array([0, 5, 7])
    blank = np.zeros((3, 28, 28, 1), np.float32)
    res = make_attack("noise", seed=3)(trained_cnn, blank, goals=goals)
    assert (res.pred_after == goals).all()
    assert (res.probs_after[np.arange(3), goals] > 0.9).all()
    # The original is the seeded uniform noise, and the result still looks like it.
    assert 0.45 < res.x.mean() < 0.55 and (res.labels == -1).all()
    for start, adv in zip(res.x, res.x_adv, strict=True):
        assert np.corrcoef(start.ravel(), adv.ravel())[0, 1] > 0.6
    again = make_attack("noise", seed=3)(trained_cnn, blank[:1], goals=0)
    np.testing.assert_array_equal(again.x[0], res.x[0])  # reproducible by seed
    with pytest.raises(ParameterError, match="target digit") as err:
        make_attack("noise")(trained_cnn, blank)
    assert err.value.field == "goal"


def test_literal_deck_cost_matches_hand_computation(trained_cnn, mnist):
    from advgui.core.attacks.deck import deck_cost
    from advgui.core.tfimport import tf

    rng = np.random.default_rng(0)
    # Noise and blends are not classified confidently, so the gradient is not negligible.
    x = np.concatenate(
        [
            rng.uniform(0, 1, (2, 28, 28, 1)).astype(np.float32),
            0.5 * (mnist.x_test[:2] + mnist.x_test[2:4]),
        ]
    )
    x_target = mnist.x_test[10:14]
    goals = np.array([1, 3, 5, 7])
    lam = 0.5
    value, grad = deck_cost(trained_cnn, x, goals, x_target, lam)

    z = trained_cnn.logits(x).astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.eye(10)[goals]
    dist = ((x - x_target).astype(np.float64) ** 2).reshape(4, -1).sum(1)
    np.testing.assert_allclose(value, 0.5 * ((y - p) ** 2).sum(1) + lam * dist, rtol=1e-4)

    # dC/dz = (diag(p) - p p^T)(p - y), then back through the network by the chain rule.
    dz = np.einsum("nij,nj->ni", p[:, :, None] * np.eye(10) - p[:, :, None] * p[:, None], p - y)
    t = tf()
    xt = t.constant(x)
    with t.GradientTape() as tape:
        tape.watch(xt)
        zt = trained_cnn.logits_model(xt, training=False)
    via_z = tape.gradient(zt, xt, output_gradients=t.constant(dz, t.float32)).numpy()
    expected = via_z + 2 * lam * (x - x_target)
    np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-6)
    # And a finite difference along the gradient agrees with it.
    d = grad / np.linalg.norm(grad.reshape(4, -1), axis=1).reshape(4, 1, 1, 1)
    h = 1e-2
    vp, _ = deck_cost(trained_cnn, x + h * d, goals, x_target, lam)
    vm, _ = deck_cost(trained_cnn, x - h * d, goals, x_target, lam)
    slope = (vp - vm) / (2 * h)
    np.testing.assert_allclose(slope, (grad * d).reshape(4, -1).sum(1), rtol=0.05)


def test_literal_deck_cost_stalls_where_cross_entropy_does_not(trained_cnn, mnist):
    idx = _fours(mnist, trained_cnn, n=2)
    x = mnist.x_test[idx]
    deck = make_attack("targeted", loss="deck", lam=0.5, quantize=False)(trained_cnn, x, goals=2)
    ce = make_attack("targeted", loss="ce", lam=0.05, quantize=False)(trained_cnn, x, goals=2)
    assert (deck.probs_after[:, 2] < 0.1).all()  # softmax saturation: the gradient vanishes
    assert (ce.probs_after[:, 2] > 0.5).all()
    assert deck.extra["stall_note"] and ce.extra["stall_note"] is None
    # The literal cost is what was minimised: it never rose much above its start.
    assert (deck.cost_history[-1] <= deck.cost_history[0] + 1e-3).all()


def test_fgsm_eps_03_drops_accuracy_below_20_percent(trained_cnn, mnist):
    x, y = mnist.x_test[:1000], mnist.y_test[:1000]
    res = make_attack("fgsm", eps=0.3)(trained_cnn, x, labels=y)
    summary = res.summary()
    assert summary["clean_accuracy"] > 0.95
    assert summary["robust_accuracy"] < 0.2
    assert res.linf.max() <= 0.3 + 1e-6 and res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    # Targeted FGSM moves probability toward the goal.
    goals = (y[:200] + 1) % 10
    tgt = make_attack("fgsm", eps=0.1)(trained_cnn, x[:200], labels=y[:200], goals=goals)
    rows = np.arange(200)
    assert tgt.probs_after[rows, goals].mean() > tgt.probs_before[rows, goals].mean()
    q = make_attack("fgsm", eps=0.3, quantize=True)(trained_cnn, x[:50], labels=y[:50])
    np.testing.assert_allclose(q.x_adv * 255, np.round(q.x_adv * 255), atol=1e-3)
    assert q.linf.max() <= 0.3 + 1e-6


def test_attacks_stop_between_steps_when_cancelled(trained_cnn, mnist):
    token = CancelToken()
    seen = []

    def progress(update):
        seen.append(update.done)
        token.cancel()

    with pytest.raises(Cancelled):
        make_attack("targeted", steps=100_000, lam=0.1)(
            trained_cnn, mnist.x_test[:1], goals=3, progress=progress, cancel=token
        )
    assert seen and seen[-1] < 1000


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("targeted", {"steps": 0}, "steps"),
        ("targeted", {"loss": "mse"}, "loss"),
        ("targeted", {"lam": "often"}, "lam"),
        ("targeted", {"lam": float("nan")}, "lam"),
        ("targeted", {"confidence": 1.0}, "confidence"),
        ("noise", {"step_size": -1}, "step_size"),
        ("fgsm", {"eps": 1.5}, "eps"),
    ],
)
def test_bad_parameters_name_their_field(name, params, field):
    with pytest.raises(ParameterError) as err:
        make_attack(name, **params)
    assert err.value.field == field
