"""AutoAttack on real MNIST: the cascade's bookkeeping, its warning flags on models that mask
gradients or are random, the evaluation and the CLI through the specs, progress and Stop for
every new attack.

Budgets are cut to keep the file short on a shared 2-core CPU: 20 iterations for APGD and FAB
instead of 100 and a few hundred Square queries instead of 5,000. The bookkeeping does not
depend on them, and on the masked model 300 queries already break most images (a plain CNN
behind a 3-bit input quantiser at eps 0.3).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from advgui.core.attacks import ATTACKS, flags, make_attack
from advgui.core.attacks.autoattack import plan
from advgui.core.errors import ParameterError
from advgui.core.progress import Cancelled, CancelToken

NEW = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square", "hsj", "autoattack")


def _check_cascade(res, n):
    cascade = res.details.cascade
    clean = int((res.pred_before == res.labels).sum())
    robust = int((res.pred_after == res.labels).sum())
    assert cascade[0]["attacked"] == clean
    for before, after in itertools.pairwise(cascade):
        assert after["attacked"] == before["robust_after"]  # each runs only on the survivors
    for rec in cascade:
        assert rec["robust_after"] == rec["attacked"] - rec["broken"]
    assert sum(rec["broken"] for rec in cascade) == clean - robust
    assert cascade[-1]["robust_after"] == robust
    assert res.summary()["robust_accuracy"] == pytest.approx(robust / n)


def test_standard_cascade_keeps_the_books(trained_cnn, mnist):
    x, y = mnist.x_test[:60], mnist.y_test[:60]
    seen = []
    res = make_attack("autoattack", eps=0.1, queries=300, steps=20)(
        trained_cnn, x, labels=y, progress=seen.append
    )
    assert [c["attack"] for c in res.details.cascade] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert [c["access"] for c in res.details.cascade][-1] == "score-based"
    _check_cascade(res, len(x))
    assert res.linf.max() <= 0.1 + 1e-5
    assert res.details.cascade[0]["broken"] > 0
    # AutoAttack is at least as strong as its first attack alone (same seed, same start).
    alone = make_attack("apgd-ce", eps=0.1, steps=20)(trained_cnn, x, labels=y)
    assert res.success.sum() >= alone.success.sum()
    assert res.details.flags == []  # a plain CNN: nothing to warn about
    fractions = [u.fraction for u in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {u.message.split(":")[1].split()[0] for u in seen} >= {"apgd-ce", "apgd-t", "fab-t"}


def test_masking_is_caught_by_the_flags_and_by_square(plain_s2, mnist):
    """A 3-bit input quantiser attacked through its true gradient (zero almost everywhere):
    the white-box attacks get nothing, Square breaks what they left, both flags fire. The
    same model attacked with BPDA (the adaptive view) raises neither flag."""
    from advgui.core.defenses.transforms import wrap

    x, y = mnist.x_test[:50], mnist.y_test[:50]
    naive = wrap(plain_s2, "squeeze-bits:3", mode="naive")
    res = make_attack("autoattack", eps=0.3, queries=300, steps=20)(naive, x, labels=y)
    _check_cascade(res, len(x))
    by = {c["attack"]: c for c in res.details.cascade}
    white = sum(c["broken"] for c in res.details.cascade if c["access"] == "white-box")
    assert by["square"]["broken"] >= 10 and by["square"]["broken"] > white
    named = {f["name"]: f for f in res.details.flags}
    assert {"zero-gradients", "gradient-masking"} <= set(named)
    assert named["zero-gradients"]["count"] >= 0.9 * named["zero-gradients"]["of"]
    masking = named["gradient-masking"]
    assert masking["broken"] == by["square"]["broken"] and "masking suspected" in masking["message"]
    assert f"broke {masking['broken']} of the {masking['of']}" in masking["message"]
    adaptive = wrap(plain_s2, "squeeze-bits:3", mode="adaptive")
    bpda = make_attack("autoattack", eps=0.3, queries=300, steps=20)(adaptive, x, labels=y)
    assert bpda.details.cascade[0]["broken"] >= 0.8 * bpda.details.cascade[0]["attacked"]
    assert not {"zero-gradients", "gradient-masking"} & {f["name"] for f in bpda.details.flags}


def test_random_and_probability_models_are_flagged(plain_s2, mnist):
    from advgui.core import evaluation
    from advgui.core.defenses.transforms import wrap

    x, y = mnist.x_test[:40], mnist.y_test[:40]
    noisy = wrap(plain_s2, "noise:0.3", mode="deployed")
    found = flags.randomness(noisy, x, y)
    assert found is not None and found["changed"] > 0 and "version rand" in found["message"]
    assert flags.randomness(plain_s2, x, y) is None
    assert flags.probabilities(plain_s2, x) is None
    soft = evaluation.probability_view(plain_s2)  # log-probabilities: what a naive view sees
    assert flags.probabilities(soft, x)["outputs"] == "log-probabilities"
    res = make_attack("autoattack", eps=0.3, queries=50, steps=10)(noisy, x[:10], labels=y[:10])
    assert "randomness" in {f["name"] for f in res.details.flags}


def test_versions_come_from_the_registry():
    assert [a for a, _ in plan("standard")] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert [a for a, _ in plan("plus")] == ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t",
                                            "fab-t"]  # fmt: skip
    rand = make_attack("autoattack", version="rand", eps=0.2)
    members = rand.members(rand.params)
    assert [m.name for m in members] == ["apgd-ce", "apgd-dlr"]
    assert all(m.params["eot"] == 20 and m.params["restarts"] == 1 for m in members)
    plus = make_attack("autoattack", version="plus", norm="l2", eps=1.0, steps=30)
    built = plus.members(plus.params)
    assert all(m.params["norm"] == "l2" for m in built)
    assert all(m.params.get("steps", 30) == 30 for m in built)
    assert {m.name: m.params["restarts"] for m in built}["fab"] == 5
    assert {m.name: m.params.get("bound") for m in built}["fab-t"] == 1.0  # min-norm: bounded


def test_chunked_runs_add_up(trained_cnn, mnist):
    from advgui.core.attacks.batch import run_batch

    x, y = mnist.x_test[:40], mnist.y_test[:40]
    attack = make_attack("autoattack", eps=0.1, queries=100, steps=20)
    res = run_batch(attack, trained_cnn, x, y, batch_size=20)
    assert res.details.chunks == 2 and len(res.details.cascade) == 4
    _check_cascade(res, len(x))
    assert res.details.cascade[0]["attacked"] == int((trained_cnn.predict(x) == y).sum())


@pytest.mark.parametrize(
    ("name", "params"),
    [("apgd-ce", {"steps": 5000}), ("apgd-t", {"steps": 2000}), ("fab-t", {"steps": 2000}),
     ("fab", {"steps": 2000}), ("square", {"queries": 100_000}), ("hsj", {"steps": 200}),
     ("autoattack", {"queries": 100_000})],
)  # fmt: skip
def test_progress_and_stop(trained_cnn, mnist, name, params):
    x, y = mnist.x_test[:30], mnist.y_test[:30]
    token = CancelToken()
    seen = []

    def progress(update):
        seen.append(update.done / update.total)
        if len(seen) >= 2:
            token.cancel()

    eps = {"eps": 0.02} if ATTACKS[name].param("eps") is not None else {}
    with pytest.raises(Cancelled):
        make_attack(name, **eps, **params)(trained_cnn, x, labels=y, progress=progress,
                                           cancel=token)  # fmt: skip
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] < 1.0


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [("autoattack", {"version": "fast"}, "version"), ("autoattack", {"eps": 2.0}, "eps"),
     ("apgd-t", {"targets": 10}, "targets"), ("apgd-ce", {"rho": 1.5}, "rho"),
     ("apgd-dlr", {"eot": 0}, "eot"), ("square", {"p_init": 0}, "p_init"),
     ("square", {"queries": 0}, "queries"), ("square", {"norm": "l1"}, "norm"),
     ("fab-t", {"eta": 0.5}, "eta"), ("fab", {"bound": -1}, "bound"),
     ("fab-t", {"bound": 2.0}, "bound"), ("hsj", {"max_evals": 0}, "max_evals"),
     ("hsj", {"norm": "l0"}, "norm")],
)  # fmt: skip
def test_bad_parameters_name_their_field(name, params, field):
    with pytest.raises(ParameterError) as err:
        make_attack(name, **params)
    assert err.value.field == field


def test_new_attacks_appear_in_the_cli_and_the_evaluation(trained_cnn, mnist, mnist_path,
                                                          tmp_path, capsys):  # fmt: skip
    from advgui.cli import build_parser, main
    from advgui.core import evaluation
    from advgui.core.models import save_model

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    method = next(a for a in sub["attack"]._actions if a.dest == "method")
    assert set(NEW) <= set(method.choices) and set(NEW) <= set(evaluation.eval_attacks())
    assert main(["attack", "--method", "autoattack", "--help-params"]) == 0
    assert "--version" in capsys.readouterr().out
    model = save_model(trained_cnn, tmp_path / "cnn.keras")
    out, csv_out = tmp_path / "e.json", tmp_path / "e.csv"
    argv = ["--data", str(mnist_path), "evaluate", "--model", str(model), "--attack",
            "autoattack", "--attack", "fab-t", "--version", "standard", "--eps", "0,0.1",
            "--n", "30", "--naive-only", "--param", "queries=100",
            "--param", "steps=20"]  # fmt: skip
    assert main([*argv, "--json", str(out), "--csv", str(csv_out)]) == 0
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    entry = result["results"][0]
    aa = entry["attacks"]["autoattack"]
    assert aa["details"]["naive"][0] is None  # eps 0: nothing ran
    cascade = aa["details"]["naive"][1]["cascade"]
    assert [c["attack"] for c in cascade] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert cascade[-1]["robust_after"] == round(aa["robust_accuracy"][1] * 30)
    assert aa["robust_accuracy"][1] <= entry["attacks"]["fab-t"]["robust_accuracy"][1]
    assert result["config"]["attack_params"] == {
        "autoattack": {"queries": 100, "steps": 20, "version": "standard"},
        "fab-t": {"steps": 20},
    }
    assert "autoattack at eps 0.1 (naive): broken by apgd-ce" in table
    rows = list(csv_out.read_text().splitlines())
    assert rows[0].endswith("cascade,flags,certified") and "naive: apgd-ce" in "".join(rows)
    # advgui attack in batch mode keeps the cascade and prints it.
    summary_out = tmp_path / "a.json"
    args = ["--data", str(mnist_path), "attack", "--model", str(model), "--method",
            "autoattack", "--n", "20", "--eps", "0.1", "--queries", "50", "--steps", "5",
            "--batch-size", "10"]  # fmt: skip
    assert main([*args, "--json", str(summary_out)]) == 0
    summary = json.loads(summary_out.read_text())
    assert summary["cascade"][0]["attack"] == "apgd-ce"
    assert sum(c["broken"] for c in summary["cascade"]) == round(
        20 * (summary["clean_accuracy"] - summary["robust_accuracy"])
    )
    assert "broken by apgd-ce" in capsys.readouterr().out
    # User errors: one line, exit 2.
    assert main([*argv[:-4], "--param", "nosuch=1"]) == 2
    assert "no chosen attack takes nosuch" in capsys.readouterr().err
    assert main([*argv[:-4], "--param", "queries=0"]) == 2
    assert "queries must be" in capsys.readouterr().err


def test_compare_view_runs_the_new_attacks(qtbot, trained_cnn, mnist):
    pytest.importorskip("pytestqt")
    from advgui.qt.state import AppState
    from advgui.qt.widgets.attack_compare import AttackCompareWidget

    widget = AttackCompareWidget(AppState())
    qtbot.addWidget(widget)
    try:
        assert set(NEW) <= set(widget.method_names())
        x, y = mnist.x_test[:3], mnist.y_test[:3]
        widget.set_inputs(trained_cnn, x, y)
        widget.set_methods(["square", "apgd-t"], {"square": "queries=200", "apgd-t": "targets=2"})
        with qtbot.waitSignal(widget.resultsReady, timeout=120000) as blocker:
            widget.run()
        assert set(blocker.args[0]) == {"square", "apgd-t"}
    finally:
        widget.shutdown()


def test_the_masking_flag_of_a_chunked_run_is_decided_on_the_whole_run():
    """A chunk where Square broke too few to fire has no flag, yet its images count: the
    merged flag is the whole cascade's, not the sum over the chunks that fired."""
    from advgui.core.attacks.base import Details

    def chunk(n: int, white_left: int, square: int) -> Details:
        cascade = [
            {"attack": "apgd-ce", "access": "white-box", "attacked": n, "broken": n - white_left,
             "robust_after": white_left},
            {"attack": "square", "access": "score-based", "attacked": white_left,
             "broken": square, "robust_after": white_left - square},
        ]  # fmt: skip
        found = flags.black_box_beats(cascade, n)
        return Details(cascade=cascade, flags=found, queries=np.ones(n, np.int64))

    fired, quiet = chunk(500, 460, 9), chunk(500, 470, 1)  # 1 of 500: under the margin
    assert fired.flags and not quiet.flags
    merged = Details.merge([fired, quiet, fired])
    (masking,) = merged.flags
    assert (masking["broken"], masking["of"], masking["n"]) == (19, 1390, 1500)
    assert (masking["robust_before"], masking["robust_after"]) == (1390, 1371)
    assert "broke 19 of the 1390" in masking["message"]
    # Below the margin over the whole run: no flag, even where one chunk alone passed it.
    assert not Details.merge([chunk(500, 460, 2), chunk(500, 470, 0)]).flags
