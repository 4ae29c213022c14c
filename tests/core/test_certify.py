"""Certified robustness on real MNIST: randomized smoothing and interval bound propagation.

Each certificate is checked against what an attack can do on the same model: an attack never
breaks a certified image, and a certified figure above an empirical one is flagged as a bug.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cached_model, defended_s2

from advgui.cli import main
from advgui.core import certify, evaluation, models
from advgui.core.certify import ibp, smoothing
from advgui.core.errors import ParameterError
from advgui.core.progress import Cancelled, CancelToken


@pytest.fixture(scope="module")
def noise_s2(mnist):
    """cnn-s2 trained under Gaussian noise of sigma 0.5 (1 epoch of 20,000 images, ~6 s)."""
    return cached_model(
        "noise-s2", mnist, lambda: defended_s2(mnist, "noise", sigma=0.5, epochs=1, n_train=20000)
    )


def _test(mnist, n, start=0):
    x = np.asarray(mnist.x_test[start : start + n], np.float32).reshape(-1, 28, 28, 1)
    return x, np.asarray(mnist.y_test[start : start + n], np.int64)


# --------------------------------------------------------------------------- Clopper-Pearson


def _reference_lower(k: int, n: int, alpha: float) -> float:
    """statsmodels' ``proportion_confint(k, n, 2 alpha, "beta")[0]`` (the reference's call), or
    scipy's exact binomial interval, which finds it by root-finding on the binomial CDF."""
    try:
        from statsmodels.stats.proportion import proportion_confint
    except ImportError:
        from scipy.stats import binomtest

        return float(binomtest(k, n).proportion_ci(1 - 2 * alpha, method="exact").low)
    return float(proportion_confint(k, n, alpha=2 * alpha, method="beta")[0])


@pytest.mark.parametrize(
    ("k", "n", "alpha"),
    [(0, 100, 0.001), (1, 100, 0.001), (50, 100, 0.05), (99, 100, 0.001), (100, 100, 0.001),
     (9_990, 10_000, 0.001), (100_000, 100_000, 0.001), (73_210, 100_000, 0.01)],
)  # fmt: skip
def test_clopper_pearson_matches_reference(k, n, alpha):
    got = float(certify.lower_confidence_bound(k, n, alpha))
    assert got == pytest.approx(_reference_lower(k, n, alpha), abs=1e-7)
    assert 0.0 <= got <= k / n


def test_clopper_pearson_covers_at_its_level():
    """Over many binomial draws, the bound is above the true p in at most alpha of them."""
    rng = np.random.default_rng(0)
    for p in (0.6, 0.9, 0.99):
        k = rng.binomial(200, p, size=20000)
        above = certify.lower_confidence_bound(k, 200, 0.05) > p
        assert above.mean() <= 0.05 + 0.005


# --------------------------------------------------------------------------- smoothing


def test_certify_and_predict_on_a_noise_trained_model(mnist, noise_s2):
    x, y = _test(mnist, 60)
    cfg = certify.SmoothingConfig(sigma=0.5, n0=100, n=2000, alpha=0.001)
    cert = certify.certify(noise_s2, x, y, cfg)
    abstain = cert.prediction == certify.ABSTAIN
    assert np.all(cert.radius[abstain] == 0) and not np.any(cert.correct[abstain])
    assert np.all(cert.p_lower[~abstain] > 0.5) and np.all(cert.radius[~abstain] > 0)
    # The largest radius n = 2000 allows: every draw agreeing (pA = alpha ** (1 / n)).
    from scipy.stats import norm

    top = 0.5 * norm.ppf(0.001 ** (1 / 2000))
    assert cert.radius.max() <= top + 1e-9
    acc = cert.certified_accuracy([0.0, 0.25, 0.5, 1.0])
    assert acc == sorted(acc, reverse=True)
    assert acc[0] >= 0.85 and acc[2] >= 0.5  # the model is a useful base classifier
    # PREDICT agrees with CERTIFY where neither abstains (both estimate the same g).
    pred = certify.predict(noise_s2, x, certify.SmoothingConfig(sigma=0.5, n=1000))
    both = (pred != certify.ABSTAIN) & ~abstain
    assert both.sum() >= 40 and np.all(pred[both] == cert.prediction[both])
    rec = cert.record([0.5])
    assert len(rec["radius"]) == 60 and rec["certified_accuracy"] == [acc[2]]


def test_pgd_l2_against_the_smoothed_classifier_never_breaks_a_certificate(mnist, noise_s2):
    """SmoothAdv-style PGD (64 noise draws per step) inside the certified radius leaves g's
    class as it was; the same attack far outside it does change classes (it is a real attack)."""
    x, y = _test(mnist, 40, start=100)
    sigma = 0.5
    cert = certify.certify(noise_s2, x, y, certify.SmoothingConfig(sigma=sigma, n=2000))
    keep = cert.correct
    assert keep.sum() >= 20
    x, y, radius = x[keep][:16], y[keep][:16], cert.radius[keep][:16]
    x_in = smoothing.attack_l2(noise_s2, x, y, sigma, 0.99 * radius, steps=20, samples=64)
    assert np.all(np.linalg.norm((x_in - x).reshape(len(x), -1), axis=1) <= radius + 1e-6)
    check = certify.SmoothingConfig(sigma=sigma, n=2000, seed=7)
    after = certify.predict(noise_s2, x_in, check)
    assert np.all((after == y) | (after == certify.ABSTAIN)), (after, y, radius)
    x_out = smoothing.attack_l2(noise_s2, x, y, sigma, 4.0, steps=20, samples=64)
    broken = certify.predict(noise_s2, x_out, check)
    assert np.mean((broken != y) & (broken != certify.ABSTAIN)) >= 0.5


def test_certify_stops_when_cancelled(mnist, noise_s2):
    x, y = _test(mnist, 20)
    token = CancelToken()
    seen = []

    def progress(update):
        seen.append(update.done)
        token.cancel()

    with pytest.raises(Cancelled):
        certify.certify(
            noise_s2, x, y, certify.SmoothingConfig(n=50_000, chunk=1000), progress=progress,
            cancel=token,
        )  # fmt: skip
    assert seen and seen[-1] < 20 * 50_100


# --------------------------------------------------------------------------- IBP


@pytest.mark.parametrize("fixture", ["ibp_s2", "trained_cnn"])
def test_ibp_bounds_contain_the_logits_of_points_in_the_box(mnist, fixture, request):
    """Soundness: uniform points and corners of the box never leave the logit bounds, nor the
    elided margin bounds (pooled CNN: the max-pooling path too)."""
    from advgui.core.tfimport import tf

    clf = request.getfixturevalue(fixture)
    steps = ibp.verifiable(clf.logits_model)
    x, y = _test(mnist, 20)
    eps = 0.1
    lo, hi = ibp.box(tf().constant(x), eps)
    z_lo, z_hi = (np.asarray(b) for b in ibp.logit_bounds(steps, lo, hi))
    up = np.asarray(ibp.margin_upper(steps, lo, hi, tf().constant(y.astype(np.int32))))
    assert np.all(up <= z_hi - z_lo[np.arange(len(y)), y][:, None] + 1e-4)  # elision is tighter
    rng = np.random.default_rng(0)
    lo, hi = np.asarray(lo), np.asarray(hi)
    for draw in range(8):
        u = rng.random(x.shape, dtype=np.float32)
        if draw % 2:
            u = np.round(u)  # corners
        z = clf.logits(lo + u * (hi - lo))
        assert np.all(z >= z_lo - 1e-4) and np.all(z <= z_hi + 1e-4)
        margin = z - z[np.arange(len(y)), y][:, None]
        assert np.all(margin <= up + 1e-4)


def test_ibp_verified_never_above_apgd(mnist, ibp_s2):
    """Every image IBP verifies at eps survives APGD-CE and APGD-T at that eps, and the
    evaluation's own check agrees (verified <= robust under each attack)."""
    from advgui.core.attacks import make_attack
    from advgui.core.attacks.batch import run_batch

    x, y = _test(mnist, 200)
    eps = 0.1
    res = certify.verified_accuracy(ibp_s2, x, y, [0.0, eps])
    assert res.verified_accuracy[0] == pytest.approx(res.clean_correct.mean())
    assert res.verified_accuracy[1] >= 0.3  # IBP training made a verifiable model
    for name in ("apgd-ce", "apgd-t"):
        attack = make_attack(name, norm="linf", steps=50)
        adv = run_batch(attack, ibp_s2, x, y, eps=eps, batch_size=200).x_adv
        robust = ibp_s2.predict(adv) == y
        assert not np.any(res.verified[1] & ~robust), name
        assert res.verified_accuracy[1] <= robust.mean()
    cfg = evaluation.EvalConfig(attacks=("apgd-ce",), eps=(0.0, eps), n=200, certify="ibp")
    entry = evaluation.evaluate([ibp_s2], mnist, cfg)["results"][0]
    assert entry["certified"]["consistent"] and not entry["certified"]["violations"]
    robust = entry["attacks"]["apgd-ce"]["robust_accuracy"]
    assert entry["certified"]["verified_accuracy"] == pytest.approx(list(res.verified_accuracy))
    assert all(v <= r for v, r in zip(entry["certified"]["verified_accuracy"], robust, strict=True))


def test_certified_above_empirical_is_flagged(mnist, ibp_s2):
    """A certificate above an attack's figure (here forced by raising the verified figure on a
    real entry) is flagged in the entry, the notes, the CSV and the table."""
    from advgui.commands.evaluate import table_lines

    cfg = evaluation.EvalConfig(attacks=("fgsm",), eps=(0.0, 0.1), n=100, certify="ibp")
    result = evaluation.evaluate([ibp_s2], mnist, cfg)
    entry = result["results"][0]
    assert evaluation.certified_violations(entry) == []
    fgsm = entry["attacks"]["fgsm"]["robust_accuracy"][1]
    entry["certified"]["verified_accuracy"][1] = fgsm + 0.01
    notes = evaluation.check_certified(entry)
    assert entry["certified"]["consistent"] is False
    assert notes and "certified above empirical" in notes[0] and "fgsm" in notes[0]
    rows = [r for r in evaluation.rows(result) if r["attack"] == "certified:ibp"]
    assert [r["eps"] for r in rows] == [0.0, 0.1]
    assert rows[1]["flags"] == "certified-above-empirical"
    assert any("IBP cert" in line and "!" in line for line in table_lines(result))


def _unverifiable(tmp_path):
    """A real trained classifier with a BatchNormalization layer (IBP here cannot bound it)."""
    from advgui.core.tfimport import keras

    k = keras()
    inputs = k.Input((28, 28, 1))
    h = k.layers.Conv2D(4, 3, activation="relu")(inputs)
    h = k.layers.BatchNormalization(name="bn")(h)
    h = k.layers.Flatten()(h)
    net = k.Model(inputs, k.layers.Dense(10)(h))
    path = tmp_path / "bn.keras"
    models.save_model(models.Classifier(net, {"name": "bn"}), path)
    return net, path


def test_not_verifiable_names_the_layer(tmp_path):
    net, _ = _unverifiable(tmp_path)
    with pytest.raises(certify.NotVerifiable, match="not verifiable: layer bn"):
        ibp.verifiable(net)
    from advgui.core.tfimport import keras

    k = keras()
    inputs = k.Input((28, 28, 1))
    flat = k.layers.Flatten()(inputs)
    a = k.layers.Dense(16, activation="relu")(flat)
    b = k.layers.Dense(16, activation="relu")(flat)
    skip = k.Model(inputs, k.layers.Dense(10)(k.layers.Add(name="join")([a, b])))
    with pytest.raises(certify.NotVerifiable, match="join"):
        ibp.verifiable(skip)


# --------------------------------------------------------------------------- CLI


def _one_line_exit_2(argv, capsys, needle):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if not line.startswith(("I0000", "E0000", "W0000"))]
    assert len(err) == 1 and needle in err[0], err


def test_cli_certify_error_paths(tmp_path, capsys, mnist_path, noise_s2):
    _, bn = _unverifiable(tmp_path)
    noise = tmp_path / "noise.keras"
    models.save_model(noise_s2, noise)
    plain = tmp_path / "plain.keras"
    meta = {k: v for k, v in noise_s2.meta.items() if k not in ("defense", "sigma")}
    models.save_model(models.Classifier(noise_s2.model, meta), plain)
    base = ["--data", str(mnist_path), "evaluate", "--n", "10", "--eps", "0,0.1"]
    _one_line_exit_2([*base, "--model", str(bn), "--certify", "ibp"], capsys, "layer bn")
    _one_line_exit_2(
        [*base, "--model", str(plain), "--certify", "smoothing"], capsys, "give a sigma (--sigma)"
    )
    _one_line_exit_2([*base, "--model", str(noise), "--sigma", "0.5"], capsys, "--certify")
    _one_line_exit_2(
        [*base, "--model", str(noise), "--certify", "ibp", "--radii", "1"], capsys, "--radii"
    )
    _one_line_exit_2(
        [*base, "--model", str(noise), "--certify", "smoothing", "--radii", "x"], capsys, "radii"
    )
    _one_line_exit_2(
        [*base, "--model", str(noise), "--certify", "ibp", "--smoothing-attack", "5"], capsys,
        "--smoothing-attack needs --certify smoothing",
    )  # fmt: skip
    _one_line_exit_2(
        [*base, "--model", str(noise), "--certify", "smoothing", "--alpha", "0.9"], capsys,
        "alpha",
    )  # fmt: skip


def test_cli_evaluate_certify_smoothing_json_csv_table(tmp_path, capsys, mnist_path, noise_s2):
    model = tmp_path / "noise.keras"
    models.save_model(noise_s2, model)
    out, csv = tmp_path / "e.json", tmp_path / "e.csv"
    argv = [
        "--data", str(mnist_path), "evaluate", "--model", str(model), "--n", "30",
        "--attack", "fgsm", "--eps", "0,0.1", "--certify", "smoothing", "--n-samples", "500",
        "--radii", "0,0.5", "--smoothing-attack", "0", "--json", str(out), "--csv", str(csv),
    ]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "certified (smoothing, sigma 0.5, n 500" in table and "r=0.5:" in table
    assert "empirical" not in table  # --smoothing-attack 0: no attack on the smoothed model
    cert = json.loads(out.read_text())["results"][0]["certified"]
    assert cert["sigma"] == 0.5 and cert["n_samples"] == 500 and cert["radii"] == [0.0, 0.5]
    assert len(cert["radius"]) == 30 and cert["consistent"] and "empirical" not in cert
    radius, correct = np.array(cert["radius"]), np.array(cert["correct"], bool)
    assert cert["certified_accuracy"][1] == pytest.approx(np.mean(correct & (radius >= 0.5)))
    assert "certified:smoothing,0.5," in csv.read_text()


# --------------------------------------------------------------------------- defend


@pytest.mark.parametrize(
    ("method", "extra"),
    [("noise", ["--sigma", "0.25"]), ("ibp", ["--eps", "0.1", "--epochs", "2"])],
)
def test_defend_trains_noise_and_ibp_end_to_end(tmp_path, capsys, mnist_path, method, extra):
    out, rec = tmp_path / f"{method}.keras", tmp_path / f"{method}.json"
    argv = [
        "--data", str(mnist_path), "defend", "--defense", method, "--defense-arch", "cnn-s2",
        "--n-train", "6000", "--out", str(out), "--json", str(rec), "--no-store", *extra,
    ]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads(rec.read_text())
    clf = models.load_model(out)
    assert clf.meta["defense"] == method
    if method == "noise":
        assert clf.meta["sigma"] == 0.25 and clf.meta["name"] == "noise-sigma0.25"
        assert payload["test_accuracy"] >= 0.85
        assert all(r["robust_accuracy"] is None for r in payload["history"])
    else:
        assert payload["config"]["eps"] == 0.1 and payload["config"]["eps_ramp"] == 0.5
        assert payload["test_accuracy"] >= 0.5
        res = certify.verified_accuracy(clf, *_test_from(mnist_path, 200), 0.1)
        assert res.verified_accuracy[0] > 0.0  # it verifies some images at its training eps


def _test_from(mnist_path, n):
    from advgui.core import data

    m = data.load_mnist(mnist_path)
    return m.x_test[:n], m.y_test[:n]


def test_bad_certify_config_is_refused():
    with pytest.raises(ParameterError, match="certify"):
        evaluation.EvalConfig(certify="crown").validate()
    with pytest.raises(ParameterError, match="sigma"):
        evaluation.EvalConfig(certify="ibp", sigma=0.5).validate()
    with pytest.raises(ParameterError, match="n must"):
        certify.SmoothingConfig(n=0).validate()


# --------------------------------------------------------------------------- plots, empirical


def _marker_colour(png, frame, points):
    """The colours at the centres of a plot's markers (``points``: (x, accuracy) pairs)."""
    from advgui.core.images import open_image

    with open_image(png) as img:
        rgb = img.convert("RGB")
        return [rgb.getpixel(tuple(round(v) for v in frame.px(x, a))) for x, a in points]


def _not_blank(png, size):
    from advgui.core.images import open_image

    with open_image(png) as img:
        assert img.size == size
        arr = np.asarray(img.convert("RGB"))
    coloured = np.any(np.abs(arr.astype(int) - arr.mean(axis=2, keepdims=True)) > 30, axis=2)
    assert coloured.mean() > 0.002  # curves drawn, not only a white frame with black text


def test_cli_smoothing_plot_and_empirical_check(tmp_path, capsys, mnist_path, noise_s2):
    """--certify smoothing --plot writes OUT-certified.png (certified against the L2 radius,
    drawn from the JSON's own figures) and runs SmoothAdv on the smoothed classifier: its
    accuracy sits beside the certified one in the table, JSON and CSV, never below it beyond
    the Monte Carlo tolerance; a certified figure forced above it is flagged."""
    import csv as csv_module

    from advgui.commands.evaluate import table_lines

    model = tmp_path / "noise.keras"
    models.save_model(noise_s2, model)
    out, table_csv, plot = tmp_path / "e.json", tmp_path / "e.csv", tmp_path / "p.png"
    argv = [
        "--data", str(mnist_path), "evaluate", "--model", str(model), "--n", "40",
        "--attack", "fgsm", "--eps", "0,0.1", "--certify", "smoothing", "--n-samples", "500",
        "--radii", "0,0.5,1", "--smoothing-attack", "24", "--smoothing-attack-samples", "8",
        "--json", str(out), "--csv", str(table_csv), "--plot", str(plot),
    ]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    certified_png = tmp_path / "p-certified.png"
    assert f"plot: {plot}, {certified_png}" in text
    assert "certified / empirical on the first 24 images (SmoothAdv PGD-L2" in text
    result = json.loads(out.read_text())
    cert = result["results"][0]["certified"]
    emp = cert["empirical"]
    assert emp["n"] == 24 and emp["samples"] == 8 and emp["radii"] == [0.0, 0.5, 1.0]
    radius = np.array(cert["radius"][:24])
    correct = np.array(cert["correct"][:24], bool)
    for r, c, a, tol in zip(emp["radii"], emp["certified_accuracy"], emp["accuracy"],
                            emp["tolerance"], strict=True):  # fmt: skip
        assert c == pytest.approx(np.mean(correct & (radius >= r)))  # the same 24 images
        assert c <= a + tol and 0 <= tol < 0.2
    assert emp["accuracy"] == sorted(emp["accuracy"], reverse=True)
    assert emp["accuracy"][-1] < emp["accuracy"][0]  # the attack does break some at r = 1
    assert cert["consistent"]
    rows = list(csv_module.DictReader(table_csv.open()))
    rows = [r for r in rows if r["attack"] == "empirical:smoothing"]
    assert [float(r["eps"]) for r in rows] == emp["radii"]
    assert [float(r["robust_accuracy"]) for r in rows] == pytest.approx(emp["accuracy"])
    assert [float(r["certified"]) for r in rows] == pytest.approx(emp["certified_accuracy"])

    # The plots: 2x 900x600, not blank, and the markers where the JSON's figures put them.
    _not_blank(plot, (1800, 1200))
    _not_blank(certified_png, (1800, 1200))
    (series,) = evaluation.certified_series(result)
    assert series["certified"] == cert["certified_accuracy"] and series["radii"] == cert["radii"]
    assert series["empirical"] == emp["accuracy"] and series["empirical_n"] == 24
    frame = evaluation.PlotFrame(scale=2, x_max=1.0)
    points = zip(cert["radii"], cert["certified_accuracy"], strict=True)
    seen = _marker_colour(certified_png, frame, points)
    assert seen == [evaluation.PALETTE[0]] * 3

    # A certified figure above the attack's (beyond the tolerance) is a bug, flagged.
    entry = result["results"][0]
    emp["certified_accuracy"][2] = emp["accuracy"][2] + emp["tolerance"][2] + 0.05
    notes = evaluation.check_certified(entry)
    assert cert["consistent"] is False
    assert notes and "SmoothAdv" in notes[0] and "radius 1" in notes[0]
    flagged = [r for r in evaluation.rows(result) if r["attack"] == "empirical:smoothing"]
    assert [r["flags"] for r in flagged] == [None, None, "certified-above-empirical"]
    assert any("/" in line and line.rstrip().endswith("!") for line in table_lines(result))


def test_miss_tolerance_is_a_chernoff_bound():
    assert smoothing.miss_tolerance(0.0, 100) == 0.0
    for mu in (0.01, 0.5, 3.0):
        k = round(smoothing.miss_tolerance(mu, 100) * 100)
        assert k >= mu

        def tail(j, mu=mu):
            return np.exp(-mu) * (np.e * mu / j) ** j

        assert tail(k + 1) < smoothing.CHECK_LEVEL <= (tail(k) if k > mu else 1.0)
    assert smoothing.miss_tolerance(0.5, 100) < smoothing.miss_tolerance(3.0, 100)


def test_smoothing_steps_report_images_and_stop_in_the_attack(mnist, noise_s2):
    """Certification reports "Certifying <model>: k/N images", the attack on the smoothed
    classifier its own step; Stop during that attack ends the evaluation at once."""
    import time

    cfg = evaluation.EvalConfig(
        attacks=("fgsm",), eps=(0.0, 0.1), n=20, certify="smoothing", n_samples=500,
        radii=(0.0, 0.5, 1.0, 2.0), smoothing_attack=20, smoothing_attack_samples=8,
    )  # fmt: skip
    token = CancelToken()
    messages, stopped_at = [], []

    def progress(update):
        messages.append(update.message)
        attacking = "Attacking smoothed" in update.message and "r=0.5" in update.message
        if attacking and not stopped_at:
            stopped_at.append(time.perf_counter())
            token.cancel()

    with pytest.raises(Cancelled):
        evaluation.evaluate([noise_s2], mnist, cfg, progress=progress, cancel=token)
    assert stopped_at and time.perf_counter() - stopped_at[0] < 2.0
    label = noise_s2.name
    assert f"Certifying {label}: 0/20 images" in messages
    assert f"Certifying {label}: 20/20 images" in messages
    assert not any("r=1:" in m for m in messages)  # nothing ran after Stop


def test_cli_ibp_plot_has_the_verified_line(tmp_path, capsys, mnist_path, ibp_s2):
    """--certify ibp --plot: one PNG, the IBP-verified accuracy drawn beside the attack (square
    markers at the JSON's figures, in its own colour); no certified-radius file."""
    model = tmp_path / "ibp.keras"
    models.save_model(ibp_s2, model)
    out, plot = tmp_path / "e.json", tmp_path / "p.png"
    argv = [
        "--data", str(mnist_path), "evaluate", "--model", str(model), "--n", "100",
        "--attack", "fgsm", "--eps", "0,0.05,0.1", "--certify", "ibp", "--json", str(out),
        "--plot", str(plot),
    ]  # fmt: skip
    assert main(argv) == 0
    assert f"plot: {plot}\n" in capsys.readouterr().out
    assert not (tmp_path / "p-certified.png").exists()
    result = json.loads(out.read_text())
    cert = result["results"][0]["certified"]
    _not_blank(plot, (1800, 1200))
    (curve,) = evaluation.verified_curves(result)
    assert curve["radii"] == cert["eps"] and curve["accuracy"] == cert["verified_accuracy"]
    fgsm = result["results"][0]["attacks"]["fgsm"]["robust_accuracy"]
    assert cert["verified_accuracy"][-1] < fgsm[-1]  # two lines, apart
    frame = evaluation.PlotFrame(scale=2, x_max=0.1)
    points = zip(cert["eps"], cert["verified_accuracy"], strict=True)
    assert _marker_colour(plot, frame, points) == [evaluation.PALETTE[1]] * 3
    points = zip(cert["eps"][1:], fgsm[1:], strict=True)
    assert _marker_colour(plot, frame, points) == [evaluation.PALETTE[0]] * 2


def test_votes_draw_independent_noise_per_image(mnist, noise_s2):
    """The empirical check's votes (independent=True) give each image its own noise, as its
    tolerance assumes; certification's sampler shares a call's draws among images."""
    x, _ = _test(mnist, 1)
    same = np.repeat(x, 4, axis=0)
    shared = smoothing.Sampler(noise_s2, 1.0).counts(same, 500)
    own = smoothing.Sampler(noise_s2, 1.0, independent=True).counts(same, 500)
    assert np.all(shared == shared[0]) and np.all(own.sum(axis=1) == 500)
    assert len({tuple(row) for row in own}) > 1
