"""BIM, PGD, MI-FGSM, C&W, DeepFool, JSMA and run_batch on the shared trained CNN, real MNIST."""

from __future__ import annotations

import numpy as np
import pytest

from advgui.core import tuning
from advgui.core.attacks import make_attack
from advgui.core.attacks.batch import run_batch
from advgui.core.errors import ParameterError
from advgui.core.progress import Cancelled, CancelToken


@pytest.fixture(scope="module")
def clean(mnist, trained_cnn):
    """60 test images the CNN classifies correctly."""
    x, y = mnist.x_test[:100], mnist.y_test[:100]
    ok = trained_cnn.predict(x) == y
    return x[ok][:60], y[ok][:60]


def _logit_margin(clf, x, cls, targeted):
    z = clf.logits(x)
    own = z[np.arange(len(z)), cls]
    z[np.arange(len(z)), cls] = -np.inf
    return own - z.max(axis=1) if targeted else z.max(axis=1) - own


def test_pgd_linf_stays_in_ball_and_beats_fgsm_step(trained_cnn, clean):
    x, y = clean
    res = make_attack("pgd", eps=0.15, step_size=0.02, steps=20)(trained_cnn, x, labels=y)
    assert res.linf.max() <= 0.15 + 1e-5
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert res.cost_history.shape == (20, len(x))
    # Cross-entropy climbs: the last step's loss is above the first's for most inputs.
    assert (res.cost_history[-1] > res.cost_history[0]).mean() > 0.9
    one_step = make_attack("bim", eps=0.15, step_size=0.15, steps=1)(trained_cnn, x, labels=y)
    assert res.success.mean() > one_step.success.mean()
    assert res.success.mean() > 0.5
    nothing = make_attack("pgd", eps=0.0, steps=3)(trained_cnn, x[:10], labels=y[:10])
    assert not nothing.success.any() and nothing.linf.max() == 0


def test_pgd_restarts_keep_the_strongest(trained_cnn, clean):
    x, y = clean
    one = make_attack("pgd", eps=0.1, step_size=0.01, steps=10, seed=3)(trained_cnn, x, labels=y)
    three = make_attack("pgd", eps=0.1, step_size=0.01, steps=10, restarts=3, seed=3)(
        trained_cnn, x, labels=y
    )
    # Same seed: the first restart is identical, later ones only replace with stronger ones.
    assert np.all(three.success >= one.success)
    assert np.all(three.extra["margin"] >= one.extra["margin"] - 1e-4)
    margins = _logit_margin(trained_cnn, three.x_adv, y, targeted=False)
    assert np.allclose(margins, three.extra["margin"], atol=1e-3)
    assert three.steps.max() <= 30 and three.steps.min() >= 10


def test_pgd_l2_and_targeted(trained_cnn, clean):
    x, y = clean
    small = make_attack("pgd", norm="l2", eps=0.5, step_size=0.1, steps=15)(
        trained_cnn, x, labels=y
    )
    big = make_attack("pgd", norm="l2", eps=3.0, step_size=0.3, steps=15)(trained_cnn, x, labels=y)
    assert small.l2.max() <= 0.5 + 1e-4 and big.l2.max() <= 3.0 + 1e-4
    assert big.success.mean() > small.success.mean() and big.success.mean() > 0.8
    goals = (y + 1) % 10
    tgt = make_attack("pgd", eps=0.3, step_size=0.02, steps=30)(
        trained_cnn, x, labels=y, goals=goals
    )
    assert tgt.success.mean() > 0.8
    assert np.array_equal(tgt.success, tgt.pred_after == goals)


def test_pgd_bfloat16_gradients_agree_with_float32(trained_cnn, clean):
    x, y = clean
    kw = {"eps": 0.1, "step_size": 0.02, "steps": 10, "random_start": False}
    f32 = make_attack("pgd", **kw)(trained_cnn, x, labels=y)
    bf16 = make_attack("pgd", precision="bfloat16", **kw)(trained_cnn, x, labels=y)
    offered = tuning.settings().bf16_available  # only where the CPU has it (core/tuning.py)
    assert bf16.extra["precision"] == ("bfloat16" if offered else "float32")
    assert bf16.x_adv.dtype == np.float32 and bf16.linf.max() <= 0.1 + 1e-5
    assert abs(bf16.success.mean() - f32.success.mean()) <= 0.1
    # The judge is float32: the kept margins are those of the float32 model.
    margins = _logit_margin(trained_cnn, bf16.x_adv, y, targeted=False)
    assert np.allclose(margins, bf16.extra["margin"], atol=1e-3)


def test_mifgsm_and_bim(trained_cnn, clean):
    x, y = clean
    mi = make_attack("mifgsm", eps=0.2, steps=10)(trained_cnn, x, labels=y)
    assert mi.linf.max() <= 0.2 + 1e-5 and mi.success.mean() > 0.5
    bim = make_attack("bim", eps=0.2, step_size=0.02, steps=10)(trained_cnn, x, labels=y)
    assert bim.linf.max() <= 0.2 + 1e-5
    again = make_attack("bim", eps=0.2, step_size=0.02, steps=10)(trained_cnn, x, labels=y)
    assert np.allclose(bim.x_adv, again.x_adv, atol=1e-5)  # no randomness in BIM


def test_deepfool_is_small_and_just_enough(trained_cnn, clean):
    x, y = clean
    res = make_attack("deepfool", steps=50, overshoot=0.02)(trained_cnn, x, labels=y)
    assert res.success.mean() > 0.95
    # Minimal: half the perturbation leaves almost every image correctly classified.
    half = x + 0.5 * (res.x_adv - x)
    assert (trained_cnn.predict(half) == y).mean() > 0.8
    assert 1 <= res.steps.max() <= 50
    with pytest.raises(ParameterError):
        make_attack("deepfool")(trained_cnn, x[:2], labels=y[:2], goals=3)


def test_cw_finds_smaller_l2_than_deepfool_and_honours_kappa(trained_cnn, clean):
    x, y = clean[0][:12], clean[1][:12]
    cw = make_attack("cw", steps=60, search_steps=6)(trained_cnn, x, labels=y)
    df = make_attack("deepfool")(trained_cnn, x, labels=y)
    assert cw.success.mean() > 0.9
    assert np.median(cw.l2[cw.success]) < 1.1 * np.median(df.l2[df.success])
    strong = make_attack("cw", steps=60, search_steps=4, kappa=3.0, c=1.0)(
        trained_cnn, x[:10], labels=y[:10]
    )
    ok = strong.success
    assert ok.mean() > 0.5
    margins = _logit_margin(trained_cnn, strong.x_adv[ok], y[:10][ok], targeted=False)
    assert margins.min() >= 3.0 - 0.05
    goals = (y[:10] + 5) % 10
    tgt = make_attack("cw", steps=60, search_steps=5)(
        trained_cnn, x[:10], labels=y[:10], goals=goals
    )
    assert tgt.success.mean() >= 0.8 and np.all(tgt.pred_after[tgt.success] == goals[tgt.success])


def test_jsma_changes_few_pixels_within_budget(trained_cnn, clean):
    x, y = clean[0][:10], clean[1][:10]
    goals = (y + 1) % 10
    res = make_attack("jsma", theta=1.0, max_share=0.1)(trained_cnn, x, labels=y, goals=goals)
    assert res.l0.max() <= int(784 * 0.1)
    assert np.all(res.x_adv >= x - 1e-6)  # theta > 0 only brightens
    assert res.success.mean() > 0.5
    tight = make_attack("jsma", theta=1.0, max_share=0.02)(trained_cnn, x, labels=y, goals=goals)
    assert tight.l0.max() <= int(784 * 0.02)
    assert tight.success.mean() < res.success.mean()
    untargeted = make_attack("jsma", max_share=0.1)(trained_cnn, x, labels=y)
    assert untargeted.success.mean() >= res.success.mean() - 0.2


@pytest.mark.parametrize(
    ("name", "params", "after"),
    # DeepFool fools all 60 images in a few steps and stops: cancel it at its first report.
    [("pgd", {"steps": 2000}, 2), ("cw", {"steps": 500}, 2), ("deepfool", {"steps": 2000}, 1),
     ("jsma", {"max_share": 1.0}, 2)],
)  # fmt: skip
def test_cancel_stops_quickly_and_progress_is_reported(trained_cnn, clean, name, params, after):
    x, y = clean
    token = CancelToken()
    updates = []

    def progress(update):
        updates.append(update.done)
        if len(updates) >= after:
            token.cancel()

    with pytest.raises(Cancelled):
        make_attack(name, **params)(trained_cnn, x, labels=y, progress=progress, cancel=token)
    assert len(updates) >= after and updates == sorted(updates)


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [("pgd", {"eps": float("nan")}, "eps"), ("pgd", {"norm": "l1"}, "norm"),
     ("pgd", {"steps": 0}, "steps"), ("pgd", {"restarts": 2, "random_start": False}, "restarts"),
     ("cw", {"search_steps": 0}, "search_steps"), ("cw", {"kappa": -1}, "kappa"),
     ("jsma", {"theta": 0}, "theta"), ("jsma", {"max_share": 2}, "max_share"),
     ("mifgsm", {"decay": "x"}, "decay"), ("bim", {"precision": "fp8"}, "precision"),
     ("deepfool", {"overshoot": -0.1}, "overshoot")],
)  # fmt: skip
def test_bad_parameters_name_their_field(name, params, field):
    with pytest.raises(ParameterError) as err:
        make_attack(name, **params)
    assert err.value.field == field


def test_run_batch_chunks_progress_and_concatenates(trained_cnn, clean):
    x, y = clean[0][:25], clean[1][:25]
    attack = make_attack("bim", eps=0.1, step_size=0.02, steps=5)
    seen = []
    res = run_batch(attack, trained_cnn, x, y, batch_size=10, progress=seen.append)
    whole = attack(trained_cnn, x, labels=y)
    assert len(res) == 25 and res.extra["chunks"] == 3
    assert np.array_equal(res.x, x) and np.array_equal(res.labels, y)
    assert res.cost_history.shape == (5, 25)
    # Chunking does not change the per-image outcome (up to float noise in a few pixels).
    assert (np.abs(res.x_adv - whole.x_adv).reshape(25, -1).max(axis=1) < 1e-3).mean() > 0.9
    done = [u.done for u in seen]
    assert done == sorted(done) and seen[-1].done == seen[-1].total == 25
    summary = res.summary()
    assert summary["n"] == 25 and summary["images_per_second"] > 0
    assert summary["robust_accuracy"] == pytest.approx(1 - summary["success_rate"])
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        run_batch(attack, trained_cnn, x, y, batch_size=10, cancel=token)
    with pytest.raises(ParameterError):
        run_batch(attack, trained_cnn, x[:0], y[:0])


def test_cli_batch_mode_reports_summary(trained_cnn, mnist_path, tmp_path, capsys):
    import json

    from advgui.cli import main
    from advgui.core.models import save_model

    model = save_model(trained_cnn, tmp_path / "cnn.keras")
    out = tmp_path / "out.json"
    args = ["--data", str(mnist_path), "attack", "--model", str(model), "--method", "pgd"]
    batch = ["--n", "40", "--eps", "0.3", "--steps", "5", "--step-size", "0.1"]
    rc = main([*args, *batch, "--restarts", "2", "--batch-size", "16", "--json", str(out)])
    assert rc == 0
    summary = json.loads(out.read_text())
    assert summary["n"] == 40 and summary["params"]["restarts"] == 2
    assert 0 <= summary["robust_accuracy"] <= summary["clean_accuracy"] <= 1
    assert summary["success_rate"] > 0.5 and summary["images_per_second"] > 0
    assert summary["median_linf"] <= 0.3 + 1e-5
    assert "images/s" in capsys.readouterr().out
    # User errors: one line, exit 2.
    assert main([*args]) == 2
    assert "--index" in capsys.readouterr().err
    assert main([*args[:-1], "deepfool", "--n", "5", "--restarts", "2"]) == 2
    assert "restarts" in capsys.readouterr().err
    assert main([*args, "--n", "20000"]) == 2
