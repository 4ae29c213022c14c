"""One declarative spec per attack: validation, CLI options, evaluation and records all come
from it, so an attack defined in one place (here: inside a test) appears everywhere."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pytest

from advgui.core.attacks import ATTACKS, Attack, make_attack
from advgui.core.attacks import spec as sp
from advgui.core.attacks.base import Details, Outcome
from advgui.core.errors import ParameterError


class Brighten(Attack):
    """Add epsilon to every pixel, scaled by gain (a weak attack for the test's sake)."""

    name: ClassVar[str] = "brighten"
    supports_targeted: ClassVar[bool] = False
    spec: ClassVar[tuple[sp.Param, ...]] = (
        sp.eps(0.2),
        sp.Param("gain", 1.0, lo=0.5, hi=2.0, label="Gain", help="how much of epsilon to add"),
        sp.Param("mode", "add", choices=("add", "sign")),
    )
    calls: ClassVar[list[float]] = []

    def run(self, clf, x, task):
        params = task.params
        Brighten.calls.append(params["eps"])
        delta = params["eps"] * params["gain"]
        x_adv = np.clip(x + min(delta, params["eps"]), 0.0, 1.0)
        return Outcome(x_adv, details=Details(queries=np.ones(len(x), np.int64)))


@pytest.fixture(scope="module")
def model_file(trained_cnn, tmp_path_factory):
    from advgui.core import models

    return models.save_model(trained_cnn, tmp_path_factory.mktemp("model") / "cnn.keras")


@pytest.fixture
def brighten(monkeypatch):
    monkeypatch.setitem(ATTACKS, "brighten", Brighten)
    Brighten.calls = []
    return Brighten


def test_spec_checks_every_parameter_with_its_own_range_and_name(brighten):
    attack = make_attack("brighten", gain=1.5)
    assert attack.params == {"eps": 0.2, "gain": 1.5, "mode": "add"}
    with pytest.raises(ParameterError, match=r"gain must be between 0\.5 and 2") as err:
        make_attack("brighten", gain=3)
    assert err.value.field == "gain"
    with pytest.raises(ParameterError, match="brighten does not take steps; it takes eps, gain"):
        make_attack("brighten", steps=3)
    with pytest.raises(ParameterError, match="mode must be one of add, sign"):
        make_attack("brighten", mode="multiply")
    # Ranges are the attacks' own everywhere: PGD's restarts above 1000 are refused at once.
    with pytest.raises(ParameterError, match="restarts must be between 1 and 1000"):
        make_attack("pgd", restarts=5000)
    pgd = ATTACKS["pgd"]
    assert pgd.param("restarts").hi == 1000 and pgd.kind == sp.FIXED_BUDGET
    assert ATTACKS["cw"].kind == sp.MINIMUM_NORM and ATTACKS["deepfool"].kind == sp.MINIMUM_NORM
    # One name per concept: every step size is "step_size", every budget "eps".
    names = {p.name for cls in ATTACKS.values() for p in cls.spec}
    assert "step" not in names and "lr" not in names and {"eps", "steps", "step_size"} <= names


def test_eps_at_call_time_reuses_one_attack_object_and_one_trace(trained_cnn, mnist):
    x, y = mnist.x_test[:16], mnist.y_test[:16]
    pgd = make_attack("pgd", steps=10, step_size=None)  # Madry's 2.5 eps / steps, per eps
    small = pgd(trained_cnn, x, labels=y, eps=0.05)
    size = len(trained_cnn.cache)
    big = pgd(trained_cnn, x, labels=y, eps=0.2)
    assert len(trained_cnn.cache) == size  # nothing new compiled for the second epsilon
    assert small.params["eps"] == 0.05 and big.params["eps"] == 0.2
    assert small.params["step_size"] == pytest.approx(2.5 * 0.05 / 10)
    assert big.params["step_size"] == pytest.approx(2.5 * 0.2 / 10)
    assert small.linf.max() <= 0.05 + 1e-6 and big.linf.max() <= 0.2 + 1e-6
    assert big.success.mean() > small.success.mean()
    assert pgd.params["eps"] == 0.3  # the object itself is unchanged
    with pytest.raises(ParameterError, match="takes no epsilon"):
        make_attack("deepfool")(trained_cnn, x, labels=y, eps=0.1)


def test_an_attack_defined_in_one_place_appears_in_the_cli(
    brighten, mnist_path, tmp_path, capsys, model_file
):
    from advgui.cli import build_parser, main

    parser = build_parser()
    attack = parser._subparsers._group_actions[0].choices["attack"]
    method = next(a for a in attack._actions if a.dest == "method")
    assert "brighten" in method.choices
    gain = next(a for a in attack._actions if a.dest == "param_gain")
    assert gain.option_strings == ["--gain"] and "brighten" in gain.help
    assert main(["attack", "--method", "brighten", "--help-params"]) == 0
    listing = capsys.readouterr().out
    assert "--gain" in listing and "0.5 to 2" in listing and "how much of epsilon" in listing
    out = tmp_path / "r.json"
    argv = ["--data", str(mnist_path), "attack", "--model", str(model_file)]
    argv += ["--method", "brighten", "--index", "3", "--gain", "1.5", "--eps", "0.1"]
    assert main([*argv, "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["params"] == {"eps": 0.1, "gain": 1.5, "mode": "add"}
    assert record["linf"] == pytest.approx(0.1, abs=1e-6)
    assert main([*argv[:-4], "--gain", "9"]) == 2  # the spec's range, one line
    assert "gain must be between 0.5 and 2" in capsys.readouterr().err


def test_an_attack_defined_in_one_place_is_evaluated_as_its_kind(brighten, trained_cnn, mnist):
    from advgui.core import evaluation

    assert "brighten" in evaluation.eval_attacks()
    assert "noise" not in evaluation.eval_attacks()  # replaces its inputs: not a robustness test
    cfg = evaluation.EvalConfig(attacks=("brighten",), eps=(0.0, 0.1, 0.3), n=100, adaptive=False)
    result = evaluation.evaluate([trained_cnn], mnist, cfg)
    accs = result["results"][0]["attacks"]["brighten"]["robust_accuracy"]
    assert accs[0] == result["results"][0]["clean_accuracy"] and accs[2] <= accs[1] <= accs[0]
    assert brighten.calls == [0.1, 0.3]  # one attack object, epsilon given per call


def test_records_and_history_keep_the_typed_details(brighten, trained_cnn, mnist, tmp_path):
    from advgui.core import history
    from advgui.core.results import ResultStore

    res = make_attack("brighten")(trained_cnn, mnist.x_test[:3], labels=mnist.y_test[:3])
    assert res.details.queries.tolist() == [1, 1, 1] and res.extra["queries"].tolist() == [1, 1, 1]
    assert res.extra["lam"] is None  # a detail this attack does not set
    store = ResultStore(tmp_path / "results")
    entry = history.save_attack(store, res, model="m")
    again, _ = history.load_attack(store.entries()[0])
    assert entry.path.is_dir() and again.details.queries.tolist() == [1, 1, 1]
    assert again.params == res.params
