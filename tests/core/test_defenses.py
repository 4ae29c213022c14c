"""Defenses on real MNIST: transformations and their BPDA/EOT views, distillation, fast
adversarial training, the feature-squeezing detector."""

from __future__ import annotations

import numpy as np
import pytest

from advgui.core.errors import ParameterError


def _fgsm_robust(view, deployed, x, y, eps):
    from advgui.core.attacks import make_attack

    res = make_attack("fgsm", eps=eps)(view, x, labels=y)
    return float(np.mean(deployed.predict(res.x_adv) == y))


def test_parse_transform_and_errors():
    from advgui.core.defenses import parse_transform, transform_label

    specs = parse_transform("squeeze-bits:1+median:2")
    assert [s.label for s in specs] == ["squeeze-bits:1", "median:2"]
    assert transform_label(specs) == "squeeze-bits:1+median:2"
    assert parse_transform("none") == ()
    for bad in ("squeeze-bits:0", "median:x", "blur:3", "jpeg:101", "noise:nan"):
        with pytest.raises(ParameterError) as err:
            parse_transform(bad)
        assert err.value.field == "transform"


def test_median_matches_numpy_reference(mnist):
    from advgui.core.defenses.transforms import apply_transforms, parse_transform

    x = mnist.x_test[:3].astype(np.float32)
    out = np.asarray(apply_transforms(x, parse_transform("median:3")))
    pad = np.pad(x[..., 0], ((0, 0), (1, 1), (1, 1)), mode="symmetric")
    ref = np.empty_like(x[..., 0])
    for i in range(28):
        for j in range(28):
            ref[:, i, j] = np.median(pad[:, i : i + 3, j : j + 3].reshape(3, -1), axis=1)
    np.testing.assert_allclose(out[..., 0], ref, atol=1e-6)


@pytest.mark.parametrize("transform", ["squeeze-bits:1", "jpeg:50"])
def test_naive_gradient_vanishes_and_bpda_restores_it(plain_s2, mnist, transform):
    from advgui.core.defenses import wrap
    from advgui.core.tfimport import tf

    t = tf()
    x = t.constant(mnist.x_test[:8].astype(np.float32))
    grads = {}
    for mode in ("naive", "adaptive"):
        view = wrap(plain_s2, transform, mode=mode)
        with t.GradientTape() as tape:
            tape.watch(x)
            z = view.logits_model(x, training=False)
            loss = t.reduce_sum(z[:, 3])
        grads[mode] = np.abs(np.asarray(tape.gradient(loss, x))).sum()
    assert grads["naive"] == 0.0 and grads["adaptive"] > 0.0
    # The forward pass is the same in every view: what is deployed is what is attacked.
    deployed = wrap(plain_s2, transform)
    x200, y200 = mnist.x_test[:200], mnist.y_test[:200]
    np.testing.assert_array_equal(
        deployed.predict(x200), wrap(plain_s2, transform, mode="adaptive").predict(x200)
    )
    assert deployed.accuracy(x200, y200) > plain_s2.accuracy(x200, y200) - 0.05


def test_eot_averages_random_noise(plain_s2, mnist):
    from advgui.core.defenses import wrap

    x = mnist.x_test[:50]
    one = wrap(plain_s2, "noise:0.3", mode="naive")
    eot = wrap(plain_s2, "noise:0.3", mode="adaptive", eot_samples=16)
    spread_one = np.std([one.logits(x) for _ in range(4)], axis=0).mean()
    spread_eot = np.std([eot.logits(x) for _ in range(4)], axis=0).mean()
    assert spread_eot < 0.5 * spread_one  # 16 draws: about 1/4 of the spread
    # Attacks run on the EOT view (its logits keep a static 10-class shape).
    from advgui.core.attacks import make_attack

    res = make_attack("pgd", eps=0.1, steps=2, restarts=2)(eot, x, labels=mnist.y_test[:50])
    assert res.linf.max() <= 0.1 + 1e-6


def test_squeezing_raises_fgsm_accuracy_and_bpda_takes_it_down(trained_cnn, mnist):
    from advgui.core.defenses import wrap

    x, y = mnist.x_test[:500], mnist.y_test[:500]
    bare = _fgsm_robust(trained_cnn, trained_cnn, x, y, 0.1)
    deployed = wrap(trained_cnn, "squeeze-bits:1")
    naive = _fgsm_robust(wrap(trained_cnn, "squeeze-bits:1", mode="naive"), deployed, x, y, 0.1)
    bpda = _fgsm_robust(wrap(trained_cnn, "squeeze-bits:1", mode="adaptive"), deployed, x, y, 0.1)
    assert naive > bare + 0.15, (bare, naive)
    assert bpda < naive - 0.01, (naive, bpda)
    # At a larger budget BPDA takes most of the apparent gain back.
    naive3 = _fgsm_robust(wrap(trained_cnn, "squeeze-bits:1", mode="naive"), deployed, x, y, 0.3)
    bpda3 = _fgsm_robust(wrap(trained_cnn, "squeeze-bits:1", mode="adaptive"), deployed, x, y, 0.3)
    assert bpda3 < naive3 - 0.1, (naive3, bpda3)


def test_distillation_masks_softmax_gradient_but_falls_to_logit_attack(mnist):
    from advgui.core.defenses import DefenseConfig, train_defended
    from advgui.core.evaluation import probability_view, scaled_view

    cfg = DefenseConfig(
        method="distill", arch="cnn-s2", epochs=2, n_train=10000, temperature=100, check_n=100
    )
    result = train_defended(cfg, mnist)
    clf = result.classifier
    assert clf.meta["defense"] == "distill" and clf.meta["temperature"] == 100
    assert len(result.history) == 4  # 2 teacher + 2 student epochs
    x, y = mnist.x_test[:500], mnist.y_test[:500]
    clean = clf.accuracy(x, y)
    assert clean > 0.85
    naive = _fgsm_robust(probability_view(clf), clf, x, y, 0.2)
    logit = _fgsm_robust(scaled_view(clf, 100.0), clf, x, y, 0.2)
    assert naive > clean - 0.15, (clean, naive)  # looks robust ...
    assert logit < 0.3, (clean, logit)  # ... and is not


def test_fast_adversarial_training_raises_pgd_accuracy(plain_s2, mnist):
    from advgui.core.attacks import make_attack
    from advgui.core.defenses import DefenseConfig, train_defended

    x, y = mnist.x_test[:300], mnist.y_test[:300]
    pgd = make_attack("pgd", eps=0.3, steps=20, step_size=0.03, restarts=1)
    before = float(np.mean(plain_s2.predict(pgd(plain_s2, x, labels=y).x_adv) == y))
    assert before < 0.1
    cfg = DefenseConfig(
        method="fast-at", arch="cnn-s2", epochs=3, n_train=20000, batch_size=50,
        eps_ramp=0.5, check_n=200, check_steps=10,
    )  # fmt: skip
    seen = []
    result = train_defended(cfg, mnist, progress=seen.append)
    clf = result.classifier
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert any(p.info.get("epoch_end") for p in seen)
    best = max(r["robust_accuracy"] for r in result.history)
    assert result.history[result.best_epoch - 1]["robust_accuracy"] == best  # best is kept
    pgd = make_attack("pgd", eps=0.3, steps=20, step_size=0.03, restarts=1)
    after = float(np.mean(clf.predict(pgd(clf, x, labels=y).x_adv) == y))
    assert after > 0.6, (before, after)
    assert clf.accuracy(x, y) > 0.9


def test_defense_config_validation():
    from advgui.core.defenses import DefenseConfig

    assert DefenseConfig.for_method("pgd-at").epochs == 6
    assert DefenseConfig.for_method("pgd-at", epochs=2).epochs == 2
    assert DefenseConfig.for_method("fast-at").epochs == 10

    for kwargs, name in (
        ({"method": "magic"}, "method"),
        ({"eps": 1.5}, "eps"),
        ({"epochs": 0}, "epochs"),
        ({"beta": float("nan")}, "beta"),
        ({"arch": "resnet"}, "arch"),
    ):
        with pytest.raises(ParameterError) as err:
            DefenseConfig(**kwargs).validate()
        assert err.value.field == name


def test_detector_false_positive_rate_matches_setting(plain_s2, mnist):
    from advgui.core.attacks import make_attack
    from advgui.core.defenses import SqueezeDetector

    det = SqueezeDetector(plain_s2)
    det.calibrate(mnist.x_test[5000:7000], fpr=0.05)
    fpr = float(det.detect(mnist.x_test[7000:10000]).mean())
    assert abs(fpr - 0.05) <= 0.02, fpr
    x, y = mnist.x_test[:300], mnist.y_test[:300]
    res = make_attack("fgsm", eps=0.2)(plain_s2, x, labels=y)
    fooled = res.success
    assert fooled.sum() > 50
    assert det.detect(res.x_adv[fooled]).mean() > 0.3  # far above the 5% on clean images
    with pytest.raises(ParameterError):
        det.calibrate(mnist.x_test[:10], fpr=0.01)  # too few images for 1%


def test_training_attack_uses_the_engines_rewrite_with_the_same_numbers(mnist):
    """PGD-AT's inner attack differentiates the engine's rebuilt logits (prepared eagerly,
    before the step is traced), from the live weights: the same adversarial batch as the
    Keras model gives, before and after the weights change."""
    from advgui.core import tuning
    from advgui.core.defenses.adversarial import (
        AdversarialLoss,
        _model_fn,
        build_defense_model,
        pgd_graph,
    )
    from advgui.core.tfimport import tf

    t = tf()
    model = build_defense_model("cnn-s2", seed=0)
    x = t.constant(mnist.x_test[:16])
    y = t.constant(mnist.y_test[:16].astype(np.int64))
    plain = _model_fn(model)
    with tuning.overridden(strided_rewrite=True):
        AdversarialLoss(method="pgd-at", eps=0.3, step_ratio=0.25, steps=5).prepare(model)
    fast = _model_fn(model)
    assert fast is not plain and fast.rewritten == ["conv_0"]
    for _ in range(2):
        a = pgd_graph(fast, x, y, t.constant(0.3), t.constant(0.075), 5, start="none")
        b = pgd_graph(plain, x, y, t.constant(0.3), t.constant(0.075), 5, start="none")
        assert np.mean(np.abs(a.numpy() - b.numpy()) > 1e-3) < 0.001  # sign flips at ties only
        model.set_weights([w * 1.1 for w in model.get_weights()])
