"""The Defenses tab's training page without Qt: what it refuses, the form per recipe, the
dataset's default budget, a real defended run stored from inside its job, and Stop keeping the
model so far, marked stopped."""

from __future__ import annotations

import pytest

from advgui.core.data import FASHION_MNIST, MNIST
from advgui.core.errors import ParameterError
from advgui.core.fit import EpochRecord
from advgui.core.progress import CancelToken
from advgui.core.sessions import DefendedTrainingSession
from advgui.core.store import ModelStore

SMALL = {"method": "fast-at", "arch": "cnn-s2", "eps": 0.3, "epochs": 1, "n_train": 2000,
         "sigma": 0.5}  # fmt: skip


@pytest.fixture
def session(tmp_path):
    return DefendedTrainingSession(ModelStore(tmp_path / "models"))


def test_refusals_name_their_field(session, mnist):
    with pytest.raises(ParameterError, match="not loaded"):
        session.prepare(None, **SMALL)
    with pytest.raises(ParameterError) as err:
        session.prepare(mnist, **{**SMALL, "eps": 1.5})
    assert err.value.field == "eps"
    with pytest.raises(ParameterError):
        session.prepare(mnist, **{**SMALL, "method": "nosuch"})


def test_form_per_recipe_and_the_datasets_default_budget(session):
    from advgui.core.defenses.adversarial import DEFAULT_EPOCHS

    noise, pgd = session.form_for("noise"), session.form_for("pgd-at")
    assert noise.takes_sigma and not noise.takes_eps
    assert pgd.takes_eps and not pgd.takes_sigma and pgd.epochs == DEFAULT_EPOCHS["pgd-at"]
    # The default follows the dataset; an epsilon the user chose stays.
    assert session.eps_after_switch(MNIST.default_eps, FASHION_MNIST) == FASHION_MNIST.default_eps
    assert session.eps_after_switch(0.25, MNIST) == 0.25
    assert session.eps_after_switch(0.25, FASHION_MNIST) == 0.25


def test_the_recipe_offered_first_is_the_datasets_and_a_chosen_one_stays(session):
    # MNIST at 0.3: PGD-AT (fast-AT's held-out PGD figure fell to AutoAttack with masking
    # flagged); Fashion-MNIST at 0.1: fast-AT held as well as PGD-AT.
    assert (session.spec, MNIST.defense, FASHION_MNIST.defense) == (MNIST, "pgd-at", "fast-at")
    assert session.method_after_switch("pgd-at", FASHION_MNIST) == "fast-at"
    assert session.method_after_switch("trades", FASHION_MNIST) == "trades"
    session.eps_after_switch(0.3, FASHION_MNIST)  # now on Fashion-MNIST
    assert session.method_after_switch("fast-at", MNIST) == "pgd-at"
    assert session.method_after_switch("trades", MNIST) == "trades"


def test_a_run_is_stored_from_its_job_and_stop_keeps_it_marked(session, mnist):
    run = session.prepare(mnist, **SMALL)
    assert run.message == "training fast-at at eps 0.3..."
    lines = []
    out = run.work(lambda u: lines.append(session.progress(u)), CancelToken())
    assert out.store_error is None and session.store.contains(out.result.classifier)
    assert len(session.history) == 1 and isinstance(session.history[0], EpochRecord)
    epoch_lines = [x for x in lines if x is not None]  # one held-out check per epoch
    assert len(epoch_lines) == 1 and "epoch 1/1" in epoch_lines[0], epoch_lines
    text, stopped = session.outcome(out)
    assert not stopped and "kept in the model store" in text and "held-out clean" in text

    # Stop after a few batches: the model so far is kept and stored, marked stopped.
    run = session.prepare(mnist, **{**SMALL, "epochs": 3})
    assert session.history == []  # a new run starts its own checks
    token = CancelToken()
    batches = []

    def on_progress(update):
        session.progress(update)
        batches.append(update)
        if len(batches) == 5:
            token.cancel()

    out = run.work(on_progress, token)
    assert out.result.cancelled and session.store.contains(out.result.classifier)
    text, stopped = session.outcome(out)
    assert stopped and text.startswith("Stopped after") and "marked stopped" in text
