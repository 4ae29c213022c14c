"""Square Attack and HopSkipJump on real MNIST, against ART 1.20 on the same model and images.

Budgets, chosen to keep the file short on a shared 2-core CPU while the comparison stays a
test: Square L-inf at eps 0.1 on 150 images with 400 queries (about 80% survive, the share
still moving with every query; ART's schedule stretched to the budget, ``rescale=True``, as
ART does), our robust accuracy averaged over 3 seeds against one ART run: a single run of
either moves by about 1 point from seed to seed at this size. HopSkipJump on 20 images at the
issue's budget (50 iterations, 10,000 probes at most, 100 at first), from the same random
starts on both sides, as the walk's end depends mostly on its start.

Square's L2 variant is checked on its own (it stays on the sphere and gets stronger with
queries), not against ART: ART 1.20's L2 update divides the new square by its target norm
where the paper's code multiplies by it, so the two are different attacks. Against the
authors' reference code, run outside the suite on the same 100 images, ours left 0.72-0.73
robust at 1,000 queries and eps 1.5 as theirs did.
"""

from __future__ import annotations

import numpy as np
import pytest

from advgui.core.attacks import ATTACKS, make_attack
from advgui.core.attacks.spec import DECISION_BASED, SCORE_BASED
from advgui.core.errors import ParameterError

art = pytest.importorskip("art")


def test_square_linf_matches_art(trained_cnn, est, mnist):
    from art.attacks.evasion import SquareAttack

    x, y = mnist.x_test[:150], mnist.y_test[:150]
    runs = [
        make_attack("square", eps=0.1, queries=400, rescale=True, seed=s)(trained_cnn, x, labels=y)
        for s in range(3)
    ]
    ours = float(np.mean([r.summary()["robust_accuracy"] for r in runs]))
    np.random.seed(0)
    ref = SquareAttack(
        est, norm=np.inf, eps=0.1, max_iter=400, p_init=0.8, nb_restarts=1, batch_size=150,
        verbose=False,
    ).generate(x, y=y)  # fmt: skip
    theirs = trained_cnn.accuracy(ref, y)
    assert 0.1 < theirs < 0.95
    assert abs(ours - theirs) <= 0.02, (ours, theirs)
    res = runs[0]
    assert res.linf.max() <= 0.1 + 1e-5
    # Queries: one on the clean image, one for the start, then one per step while robust.
    q, attacked = res.details.queries, res.pred_before == y
    assert q.max() == 400 + 2 and q[~res.success].min() == 400 + 2
    assert q[attacked & res.success].min() >= 2 and np.all(q[~attacked] == 1)
    assert np.all(res.details.margin[res.success] > 0) and np.all(
        res.details.margin[~res.success] <= 0
    )


def test_square_l2_stays_on_the_sphere_and_gains_with_queries(trained_cnn, mnist):
    x, y = mnist.x_test[:60], mnist.y_test[:60]
    few = make_attack("square", norm="l2", eps=1.5, queries=50)(trained_cnn, x, labels=y)
    many = make_attack("square", norm="l2", eps=1.5, queries=600)(trained_cnn, x, labels=y)
    assert many.l2.max() <= 1.5 + 1e-4 and few.l2.max() <= 1.5 + 1e-4
    moved = ~many.success | (many.details.queries > 2)
    assert np.median(many.l2[moved]) > 1.3  # the perturbation keeps its budget (clipping aside)
    assert many.success.mean() > few.success.mean() + 0.1


def misclassified_noise(clf, x, y, seed):
    """A uniform-noise image the model misclassifies, per image: HopSkipJump's random start."""
    rng = np.random.default_rng(seed)
    out, todo = np.empty_like(x), np.arange(len(x))
    while len(todo):
        noise = rng.uniform(0.0, 1.0, size=(len(todo), *x.shape[1:])).astype(np.float32)
        ok = clf.predict(noise) != y[todo]
        out[todo[ok]] = noise[ok]
        todo = todo[~ok]
    return out


def test_hopskipjump_median_l2_matches_art(trained_cnn, est, mnist):
    from art.attacks.evasion import HopSkipJump

    x, y = mnist.x_test[:20], mnist.y_test[:20]
    # The same random starts on both sides: where the walk ends depends mostly on where it
    # starts (per image two starts differ up to 2x; the median of 20 moved 10-20% between
    # seeds of either implementation, and ART 1.20 draws its start unseeded). Measured, 3
    # seeds of shared starts: medians 2.20/2.20, 1.94/1.82, 2.16/2.21 (ours/ART's).
    starts = misclassified_noise(trained_cnn, x, y, seed=1)
    ours = make_attack("hsj", norm="l2", steps=50)(trained_cnn, x, labels=y, starts=starts)
    np.random.seed(0)
    ref = HopSkipJump(
        est, norm=2, max_iter=50, max_eval=10_000, init_eval=100, init_size=100, verbose=False
    ).generate(x, x_adv_init=starts)
    ok = trained_cnn.predict(ref) != y
    theirs = np.sqrt(((ref - x).astype(np.float64) ** 2).reshape(len(x), -1).sum(axis=1))
    assert ours.success.mean() >= ok.mean() - 0.1
    a, b = float(np.median(ours.l2[ours.success])), float(np.median(theirs[ok]))
    assert abs(a - b) <= 0.2 * b, (a, b)
    assert np.allclose(ours.details.min_norm[ours.success], ours.l2[ours.success], atol=1e-4)
    # Decision-based: the queries are label queries, and there are many.
    assert ours.details.queries[ours.pred_before == y].min() > 50 * 100


def test_hopskipjump_starts_where_it_is_told(trained_cnn, mnist):
    """A given start is used where it is misclassified (an image of another digit: the walk
    only comes closer to the image), and refused by an attack that takes none."""
    x, y = mnist.x_test[:6], mnist.y_test[:6]
    other = mnist.x_test[np.flatnonzero(mnist.y_test != y[0])[:6]]
    other = np.where((trained_cnn.predict(other) != y)[:, None, None, None], other, x)
    res = make_attack("hsj", norm="l2", steps=2)(trained_cnn, x, labels=y, starts=other)
    moved = trained_cnn.predict(other) != y
    before = np.sqrt(((other - x).astype(np.float64) ** 2).reshape(len(x), -1).sum(axis=1))
    assert res.success[moved].all() and np.all(res.l2[moved] <= before[moved] + 1e-4)
    with pytest.raises(ParameterError, match="does not take starting points"):
        make_attack("fgsm", eps=0.1)(trained_cnn, x, labels=y, starts=other)
    with pytest.raises(ParameterError, match="one starting point per image"):
        make_attack("hsj", steps=1)(trained_cnn, x, labels=y, starts=other[:3])
    hostile = other.copy()
    hostile[0, 0, 0, 0] = np.nan
    for bad in (hostile, other + 2.0):
        with pytest.raises(ParameterError, match="finite with pixels in"):
            make_attack("hsj", steps=1)(trained_cnn, x, labels=y, starts=bad)


def test_hopskipjump_linf_improves_with_iterations(trained_cnn, mnist):
    x, y = mnist.x_test[10:18], mnist.y_test[10:18]
    short = make_attack("hsj", norm="linf", steps=2)(trained_cnn, x, labels=y)
    longer = make_attack("hsj", norm="linf", steps=10)(trained_cnn, x, labels=y)
    assert short.success.all() and longer.success.all()
    assert np.median(longer.linf) < 0.9 * np.median(short.linf)


def test_black_box_attacks_declare_what_they_see():
    assert ATTACKS["square"].access == SCORE_BASED and ATTACKS["hsj"].access == DECISION_BASED
    assert ATTACKS["apgd-ce"].access == "white-box" and ATTACKS["fab-t"].access == "white-box"


@pytest.mark.parametrize("name", ["square", "hsj"])
def test_black_box_trace_follows_queries_live_and_in_the_result(trained_cnn, mnist, name):
    """The Attack tab's live view of a black-box attack: the first image's margin (Square) or
    distance (HopSkipJump) against the queries used, sent while it runs and kept after."""
    x, y = mnist.x_test[:2], mnist.y_test[:2]
    params = {"eps": 0.3, "queries": 300} if name == "square" else {"steps": 6}
    updates = []
    res = make_attack(name, **params)(trained_cnn, x, labels=y, progress=updates.append)
    trace = np.asarray(res.details.trace)
    assert trace.ndim == 2 and trace.shape[1] == 2 and len(trace) >= 3
    assert (np.diff(trace[:, 0]) > 0).all()  # queries only grow
    assert trace[-1, 0] <= res.details.queries[0]
    live = [u.partial.trace for u in updates if u.partial is not None and u.partial.trace]
    assert live and len(live[-1]) <= len(trace) and live[-1] == res.details.trace[: len(live[-1])]
    if name == "square":  # the best margin so far only falls, and it is the one kept
        assert (np.diff(trace[:, 1]) <= 1e-6).all()
        assert trace[-1, 1] == pytest.approx(-res.details.margin[0], abs=1e-4)
    else:  # the distance of the boundary point falls over the run, to the one kept
        assert trace[-1, 1] < trace[0, 1]
        assert res.success[0] and trace[-1, 1] == pytest.approx(res.l2[0], rel=1e-3)
    title, x_label, _ = ATTACKS[name].trace_axis(res.params, False)
    assert "queries" in x_label and ("margin" if name == "square" else "distance") in title
