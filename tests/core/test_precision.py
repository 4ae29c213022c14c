"""Mixed precision (core/precision.py): the policy per device and per ISA, mixed training that
saves a float32 model, and mixed attacks whose float32 re-check agrees with float32 attacks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from advgui.cli import main
from advgui.core import precision, tuning
from advgui.core.attacks import make_attack
from advgui.core.errors import ParameterError

EPYC_AVX2 = """processor\t: 0
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu sse sse2 fma avx avx2
"""
SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16
"""
GRAVITON3 = """processor\t: 0
Features\t: fp asimd sve bf16 i8mm
CPU implementer\t: 0x41
CPU part\t: 0xd40
"""


def _cpu(text: str, arch: str = "x86_64") -> tuning.Cpu:
    model, flags = tuning.parse_cpuinfo(text)
    return tuning.Cpu(model, arch, flags, 2, "/proc/cpuinfo")


@pytest.fixture
def fresh_tuning():
    tuning.reset()
    yield
    tuning.reset()


#: Timings for every measurement, so that a replaced CPU is not calibrated again (seconds).
TIMINGS = {
    "conv_input_grad": [0.002, 0.005],
    "bf16_conv": [0.001, 0.003],
    "one_thread_1": [0.004, 0.011],
    "one_thread_8": [0.02, 0.04],
}


def _as_cpu(monkeypatch, cpu: tuning.Cpu | None) -> None:
    """This process's CPU replaced by ``cpu`` (None: the real one), its timings cached."""
    if cpu is not None:
        monkeypatch.setattr(tuning, "detect_cpu", lambda: cpu)
    tuning.reset()
    real, version, key, path = tuning._context()
    assert tuning.write_cache(path, key, real, version, TIMINGS)


def test_the_policy_follows_the_isa_and_the_device():
    no_bf16 = tuning.decide(_cpu(EPYC_AVX2), {})
    assert no_bf16.mixed_policy is None
    assert "refused" in no_bf16.reasons["mixed"] and "slower" in no_bf16.reasons["mixed"]
    for text, arch in ((SAPPHIRE_RAPIDS, "x86_64"), (GRAVITON3, "aarch64")):
        # bf16 instructions: mixed_bfloat16, whatever the bf16 gradients measured.
        for timings in ({}, {"bf16_conv": [0.003, 0.001]}):
            assert tuning.decide(_cpu(text, arch), timings).mixed_policy == "mixed_bfloat16"
    on_gpu = tuning.decide(_cpu(EPYC_AVX2), {}, device="GPU: NVIDIA H200")
    assert on_gpu.mixed_policy == "mixed_float16" and "loss scaling" in on_gpu.reasons["mixed"]
    assert any(line.startswith("mixed_policy=refused") for line in no_bf16.lines())
    assert no_bf16.to_dict()["mixed_policy"] is None
    with pytest.raises(ParameterError, match="precision must be one of"):
        precision.check("half")


def test_the_policy_comes_from_tensorflows_device_list(fresh_tuning, isolated_home, monkeypatch):
    """Where TensorFlow lists a GPU, mixed is mixed_float16; on this CPU it is mixed_bfloat16
    with bf16 instructions and refused without them (the CPU's flags replaced)."""
    from advgui.core.tfimport import tf

    t = tf()
    _as_cpu(monkeypatch, None)
    real_cpu = tuning.detect_cpu()
    expected = "mixed_bfloat16" if real_cpu.bf16_hardware else None
    assert tuning.settings().mixed_policy == expected
    assert precision.policy("float32") == "float32"

    real = t.config.list_physical_devices
    fake = [t.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")]
    monkeypatch.setattr(
        t.config, "list_physical_devices", lambda kind=None: fake if kind == "GPU" else real(kind)
    )
    tuning.reset()
    assert precision.policy("mixed") == "mixed_float16"
    monkeypatch.setattr(t.config, "list_physical_devices", real)

    _as_cpu(monkeypatch, _cpu(EPYC_AVX2))
    with pytest.raises(ParameterError, match="no bf16 instructions") as err:
        precision.policy("mixed")
    assert "\n" not in str(err.value) and err.value.field == "precision"
    _as_cpu(monkeypatch, _cpu(SAPPHIRE_RAPIDS))
    assert precision.policy("mixed") == "mixed_bfloat16"


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--arch", "mlp", "--epochs", "1", "--no-store", "--out", "{tmp}/m.keras"],
        ["defend", "--defense", "fast-at", "--no-store", "--out", "{tmp}/m.keras"],
        ["attack", "--model", "{tmp}/none.keras", "--method", "fgsm", "--n", "10"],
        ["evaluate", "--model", "{tmp}/none.keras", "--attack", "fgsm"],
    ],
    ids=["train", "defend", "attack", "evaluate"],
)
def test_mixed_is_refused_without_bf16_with_one_line(
    argv, fresh_tuning, isolated_home, monkeypatch, tmp_path, mnist_path, capsys
):
    _as_cpu(monkeypatch, _cpu(EPYC_AVX2))
    filled = [a.format(tmp=tmp_path) for a in argv]
    rc = main(["--data", str(mnist_path), *filled, "--precision", "mixed"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"advgui {argv[0]}: error: mixed precision is not available")
    assert "bf16" in lines[0]
    assert not list(tmp_path.glob("*.keras"))  # refused before any work


def _mixed_here():
    """This CPU's own mixed policy; on one without bf16 the bfloat16 clone is still correct
    (emulated, slower), so the tests run everywhere."""
    if tuning.detect_cpu().bf16_hardware:
        return tuning.overridden()
    return tuning.overridden(mixed_policy="mixed_bfloat16")


def test_mixed_training_saves_a_float32_model(mnist, tmp_path, fresh_tuning):
    from advgui.core import models, training

    cfg = training.TrainConfig(
        arch="cnn", epochs=1, n_train=3000, n_val=0, batch_size=64, precision="mixed"
    )
    with _mixed_here():
        result = training.train(cfg, mnist)
    clf = result.classifier
    assert result.test_accuracy > 0.85  # 3,000 images, one epoch: about 91% in float32
    assert clf.meta["params"]["precision"] == "mixed"
    assert {w.dtype for w in clf.model.weights} == {"float32"}
    assert {ly.dtype_policy.name for ly in clf.model.layers} == {"float32"}
    path = models.save_model(clf, tmp_path / "mixed.keras")
    config = json.loads(__import__("zipfile").ZipFile(path).read("config.json"))
    assert "bfloat16" not in json.dumps(config) and "float16" not in json.dumps(config)
    back = models.load_model(path)
    x = mnist.x_test[:500]
    z_mem, z_file = clf.logits(x), back.logits(x)
    raw = back.model(x[:8], training=False)
    assert raw.dtype == "float32" and z_file.dtype == np.float32
    np.testing.assert_allclose(z_file, z_mem, rtol=1e-5, atol=1e-5)


def test_mixed_float16_training_scales_the_loss(mnist, fresh_tuning, monkeypatch):
    """The GPU's policy, run here: Keras's LossScaleOptimizer wraps the optimizer and the
    model still learns (float16 arithmetic on a CPU is slow, so a small MLP)."""
    from advgui.core import fit, models
    from advgui.core.tfimport import keras

    made = []
    wrap = keras().optimizers.LossScaleOptimizer

    def spy(inner, **kw):
        made.append(wrap(inner, **kw))
        return made[-1]

    monkeypatch.setattr(keras().optimizers, "LossScaleOptimizer", spy)
    x, y = mnist.x_train[:2000], mnist.y_train[:2000].astype(np.int64)
    test = (mnist.x_test[:1000], mnist.y_test[:1000])
    accuracy = {}
    for prec in ("float32", "mixed"):
        net = models.build_model("mlp", hidden=(32,), seed=1)
        plan = fit.Plan(2, 100, fit.Schedule("onecycle", 1e-2), precision=prec)
        with tuning.overridden(mixed_policy="mixed_float16"):
            done = fit.fit(net, x, y, fit.CrossEntropy(), plan, test=test)
        accuracy[prec] = done.test.accuracy
        assert {w.dtype for w in net.weights} == {"float32"}
    assert len(made) == 1 and float(made[0].dynamic_scale.numpy()) > 1.0  # mixed only
    assert accuracy["float32"] > 0.8, accuracy
    assert abs(accuracy["mixed"] - accuracy["float32"]) < 0.03, accuracy


@pytest.mark.parametrize(
    "name,params",
    [
        ("fgsm", {"eps": 0.1}),
        ("pgd", {"eps": 0.1, "steps": 10, "step_size": 0.025, "random_start": False}),
    ],
)
def test_a_mixed_attack_rechecked_in_float32_agrees(trained_cnn, mnist, name, params, fresh_tuning):
    x, y = mnist.x_test[:200], mnist.y_test[:200]
    attack = make_attack(name, **params)
    with _mixed_here():
        full, none = precision.run_attack(attack, trained_cnn, x, y)
        mixed, check = precision.run_attack(attack, trained_cnn, x, y, precision="mixed")
    assert none is None and check["policy"] == "mixed_bfloat16"
    assert mixed.extra["precision"] == "mixed_bfloat16" and full.extra["precision"] in (
        None,
        "float32",
    )
    robust = mixed.summary()["robust_accuracy"]
    # The reported figure is the float32 model's verdict on the mixed attack's images.
    assert robust == pytest.approx(np.mean(trained_cnn.predict(mixed.x_adv) == y))
    assert abs(robust - full.summary()["robust_accuracy"]) <= 0.04
    assert 0.05 < robust < 0.95  # a budget where the attack matters
    assert np.abs(mixed.x_adv - x).max() <= params["eps"] + 1e-6
    assert check["agree"] == (check["flips"] == 0)
    if check["flips"]:
        assert check["robust_accuracy_float32"] == pytest.approx(robust)
        assert "robust_accuracy_mixed" in check


def test_attack_json_carries_both_figures(trained_cnn, mnist_path, tmp_path, capsys, fresh_tuning):
    from advgui.core import models

    model = models.save_model(trained_cnn, tmp_path / "cnn.keras")
    out = tmp_path / "r.json"
    argv = ["--data", str(mnist_path), "attack", "--model", str(model), "--method", "pgd",
            "--n", "100", "--eps", "0.1", "--steps", "10", "--precision", "mixed",
            "--json", str(out), "--quiet"]  # fmt: skip
    with _mixed_here():
        assert main(argv) == 0
    text = capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["precision"] == "mixed" and record["precision_policy"] == "mixed_bfloat16"
    check = record["precision_check"]
    assert check["policy"] == "mixed_bfloat16" and check["flips"] >= 0
    if check["flips"]:
        assert "DISAGREES" in text
        assert check["robust_accuracy_float32"] == record["robust_accuracy"]
        assert abs(check["robust_accuracy_mixed"] - record["robust_accuracy"]) <= 0.05
    else:
        assert "float32 re-check agrees" in text


def test_evaluate_records_the_precision(trained_cnn, mnist, fresh_tuning):
    from advgui.core import evaluation

    cfg = evaluation.EvalConfig(attacks=("fgsm",), eps=(0.0, 0.1), n=150, precision="mixed")
    with _mixed_here():
        result = evaluation.evaluate([trained_cnn], mnist, cfg)
    assert result["precision"] == "mixed" and result["precision_policy"] == "mixed_bfloat16"
    fgsm = result["results"][0]["attacks"]["fgsm"]
    rec = fgsm["precision"]["views"]["naive"]
    assert len(rec["flips"]) == len(rec["robust_accuracy_mixed"]) == 1
    assert abs(rec["robust_accuracy_mixed"][0] - fgsm["robust_accuracy"][1]) <= 0.04
    noted = any("float32 re-check disagree" in n for n in result["results"][0]["notes"])
    assert noted == (rec["flips"][0] > 0)
