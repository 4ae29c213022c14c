"""CPU-specific choices (core/tuning.py): the ISA read right, the decisions follow the measured
timings, the calibration really runs here and is reused, a hostile cache is ignored, and bf16
is never offered without bf16 instructions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advgui.core import tuning
from advgui.core.attacks import make_attack
from advgui.core.models import Classifier

ROOT = Path(__file__).resolve().parents[2]

#: First blocks of /proc/cpuinfo as the kernel writes them on CPUs this machine is not.
EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni

processor\t: 1
model name\t: should not be read
flags\t\t: avx512f amx_bf16
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid sve bf16 i8mm
CPU implementer\t: 0x41
CPU part\t: 0xd40
"""
#: Timings that favour every fast path, and that favour none (seconds: (fast path, reference)).
FAST = {
    "conv_input_grad": [0.002, 0.005],
    "strided_conv_grad": [0.003, 0.007],
    "bf16_conv": [0.001, 0.003],
    "one_thread_1": [0.004, 0.011],
    "one_thread_8": [0.02, 0.04],
    "streams": [0.057, 0.064],
}
SLOW = {k: [b, a] for k, (a, b) in FAST.items()}


def _cpu(text: str, cores: int = 2, arch: str = "x86_64") -> tuning.Cpu:
    model, flags = tuning.parse_cpuinfo(text)
    return tuning.Cpu(model, arch, flags, cores, "/proc/cpuinfo")


def test_cpuinfo_is_read_for_x86_and_arm64():
    epyc = _cpu(EPYC_AVX2)
    assert epyc.model == "AMD EPYC 7763 64-Core Processor"
    assert epyc.flags == {"avx2", "fma"}  # the second processor's block is not read
    assert not epyc.bf16_hardware
    arm = _cpu(GRAVITON3, arch="aarch64")
    assert arm.model == "ARM implementer 0x41 part 0xd40"
    assert arm.flags == {"asimd", "sve", "bf16"} and arm.bf16_hardware


def test_this_machine_is_detected():
    cpu = tuning.detect_cpu()
    assert cpu.cores >= 1 and cpu.model and cpu.arch
    if Path("/proc/cpuinfo").is_file():
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        first = text.split("\n\n")[0]
        words = set(next(ln for ln in first.splitlines() if ln.startswith(("flags", "Features")))
                    .split(":", 1)[1].split())  # fmt: skip
        assert cpu.flags == {f for f in tuning.RELEVANT_FLAGS if f in words}
        assert cpu.flags_from == "/proc/cpuinfo"


def test_bf16_is_never_offered_without_bf16_instructions():
    epyc = _cpu(EPYC_AVX2)
    for timings in (FAST, SLOW, {}):
        assert not tuning.decide(epyc, timings).bf16_available
    forced = tuning.decide(epyc, FAST, overrides={"bf16": True})
    assert not forced.bf16_available and "refused" in forced.reasons["bf16"]
    arm = _cpu(GRAVITON3, arch="aarch64")
    assert tuning.decide(arm, FAST).bf16_available  # instructions and measured faster
    assert not tuning.decide(arm, SLOW).bf16_available  # instructions, but measured slower
    assert not tuning.decide(arm, {}).bf16_available  # not measured: float32


def test_decisions_follow_the_timings():
    cpu = _cpu(EPYC_AVX2, cores=4)
    fast, slow = tuning.decide(cpu, FAST), tuning.decide(cpu, SLOW)
    assert fast.conv_rewrite and not slow.conv_rewrite
    assert fast.strided_rewrite and not slow.strided_rewrite
    assert fast.attack_streams == 2 and slow.attack_streams == 1
    assert "two concurrent halves 0.89x" in fast.reasons["attack_streams"]
    assert "space-to-depth" in fast.reasons["strided_rewrite"]
    assert fast.one_thread_max_batch == tuning.ONE_THREAD_LARGEST and fast.pool_override
    assert slow.one_thread_max_batch == 0 and not slow.one_thread and not slow.pool_override
    only_one = dict(FAST, one_thread_8=[0.05, 0.04])  # one thread wins on 1 image only
    assert tuning.decide(cpu, only_one).one_thread_max_batch == 1
    # One core: nothing to gain from a one-thread session, nor from the override.
    single = tuning.decide(_cpu(EPYC_AVX2, cores=1), FAST)
    assert single.one_thread_max_batch == 0 and not single.pool_override
    assert single.attack_streams == 1 and "one core" in single.reasons["attack_streams"]
    # The override off in this process: a one-thread session would share the pool.
    assert tuning.decide(cpu, FAST, override_active=False).one_thread_max_batch == 0
    # Nothing measured yet: TensorFlow's own paths, and the override on so it can be measured.
    none = tuning.decide(cpu, {})
    assert not none.conv_rewrite and not none.one_thread and none.pool_override
    assert not none.strided_rewrite and none.attack_streams == 1
    nice = tuning.decide(cpu, {}, platform_name="linux").background_nice
    assert nice > 0 and tuning.decide(cpu, {}, platform_name="win32").background_nice == 0
    for settings in (fast, slow, none, single):
        keys = ("conv_rewrite", "one_thread_max_batch", "bf16", "attack_streams")
        assert all(settings.reasons[k] for k in keys)


def test_advgui_tune_overrides_and_skips_bad_items(caplog):
    text = "conv_rewrite=0, one_thread_max_batch=1,bogus=3,bf16=maybe,x,attack_streams=3"
    got = tuning.parse_overrides(text + ",attack_streams=0")
    assert got == {"conv_rewrite": False, "one_thread_max_batch": 1, "attack_streams": 3}
    assert sum("ADVGUI_TUNE" in r.getMessage() for r in caplog.records) == 4
    chosen = tuning.decide(_cpu(EPYC_AVX2), FAST, overrides=got)
    assert not chosen.conv_rewrite and chosen.one_thread_max_batch == 1
    assert chosen.attack_streams == 3
    assert "ADVGUI_TUNE" in chosen.reasons["conv_rewrite"]


@pytest.fixture
def fresh_tuning():
    """This process's choices forgotten before and after (the test's own cache folder)."""
    tuning.reset()
    yield
    tuning.reset()


def test_calibration_runs_here_is_cached_and_reused(fresh_tuning, isolated_home):
    from advgui.core.tfimport import tf

    tf()
    first = tuning.settings()
    path = Path(first.source.split("cached in ")[-1])
    assert first.source.startswith("measured now") and path.is_file()
    assert path.parent.parent == isolated_home / "cache"
    spent = float(first.source.split("(")[1].split(" s")[0])
    assert spent < 3.0  # under a second on an idle machine; this one is shared
    cpu = first.cpu
    expected = {"conv_input_grad", "strided_conv_grad"}
    expected |= {"bf16_conv"} if cpu.bf16_hardware else set()
    expected |= {"one_thread_1", "one_thread_8", "streams"} if cpu.cores > 1 else set()
    assert set(first.timings) == expected
    # The choices are what the measured timings say.
    again = tuning.decide(cpu, first.timings, tf_version=first.tensorflow)
    names = ("conv_rewrite", "strided_rewrite", "one_thread_max_batch", "bf16_available",
             "pool_override", "attack_streams")  # fmt: skip
    for name in names:
        assert getattr(again, name) == getattr(first, name), name
    stamp = path.stat().st_mtime_ns
    doc = json.loads(path.read_text())
    assert doc["timings"] == first.timings and doc["key"] == path.stem

    tuning.reset()
    second = tuning.settings()
    assert second.source == f"cache {path}" and second.timings == first.timings
    assert path.stat().st_mtime_ns == stamp  # nothing measured or written again
    assert tuning.early_settings() is second


HOSTILE = {
    "too big": lambda good: json.dumps(dict(good, pad="x" * tuning.CACHE_MAX_BYTES)),
    "not json": lambda good: "{'schema': 1",
    "not utf-8": lambda good: b"\xff\xfe{}",
    "deep": lambda good: "[" * 100000 + "]" * 100000,
    "a list": lambda good: json.dumps([good]),
    "other schema": lambda good: json.dumps(dict(good, schema=tuning.SCHEMA + 1)),
    "other machine": lambda good: json.dumps(dict(good, key="0" * 20)),
    "unknown entry": lambda good: json.dumps(dict(good, timings={"rm -rf": [1, 2]})),
    "negative": lambda good: json.dumps(dict(good, timings={"conv_input_grad": [-1, 2]})),
    "nan": lambda good: json.dumps(dict(good, timings={"conv_input_grad": [float("nan"), 1]})),
    "bool": lambda good: json.dumps(dict(good, timings={"conv_input_grad": [True, 1]})),
    "three values": lambda good: json.dumps(dict(good, timings={"conv_input_grad": [1, 2, 3]})),
    "a string": lambda good: json.dumps(dict(good, timings={"conv_input_grad": "fast"})),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_cache_file_is_ignored(kind, tmp_path, caplog):
    cpu = tuning.detect_cpu()
    key = tuning.machine_key(cpu, "2.x")
    path = tmp_path / f"{key}.json"
    assert tuning.write_cache(path, key, cpu, "2.x", FAST)
    assert tuning.read_cache(path, key) == FAST  # the untouched file is read
    good = json.loads(path.read_text())
    bad = HOSTILE[kind](good)
    path.write_bytes(bad if isinstance(bad, bytes) else bad.encode())
    assert tuning.read_cache(path, key) is None
    assert any("ignored" in r.getMessage() for r in caplog.records)


def test_a_hostile_cache_is_replaced_by_a_measurement(fresh_tuning, isolated_home):
    from advgui.core.tfimport import tf

    tf()
    cpu = tuning.detect_cpu()
    key = tuning.machine_key(cpu, tuning.tensorflow_version())
    path = tuning.cache_path(key)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema": tuning.SCHEMA, "key": key, "timings": {"x": 1}}))
    chosen = tuning.settings()
    assert chosen.source.startswith("measured now")
    assert tuning.read_cache(path, key) == chosen.timings


def test_the_thread_pool_override_follows_the_cached_measurement(tmp_path):
    """Set before TensorFlow loads, so from the cache: a machine where one thread measured
    slower gets no override (a fresh interpreter: this one's TensorFlow is loaded)."""
    code = (
        "import os; from advgui.core import tfimport, tuning; tfimport._configure_env(); "
        "print(os.environ['TF_OVERRIDE_GLOBAL_THREADPOOL'], tuning.early_settings().source)"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_OVERRIDE_GLOBAL_THREADPOOL"}
    env.update(ADVGUI_HOME=str(tmp_path))
    env.pop("ADVGUI_TUNE", None)

    def run() -> list[str]:
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                             capture_output=True, timeout=60, check=True)  # fmt: skip
        return out.stdout.split(maxsplit=1)

    flag, source = run()
    assert (flag, source.strip()) == ("1", "not measured")  # so that it can be measured
    cpu = tuning.detect_cpu()
    if cpu.cores == 1:
        return
    key = tuning.machine_key(cpu, tuning.tensorflow_version())
    path = tmp_path / "cache" / "tuning" / f"{key}.json"
    path.parent.mkdir(parents=True)
    assert tuning.write_cache(path, key, cpu, tuning.tensorflow_version(), SLOW)
    flag, source = run()
    assert flag == "0" and source.strip() == f"cache {path}"
    assert tuning.write_cache(path, key, cpu, tuning.tensorflow_version(), FAST)
    assert run()[0] == "1"


def test_the_attacks_follow_the_choices(trained_cnn, mnist, fresh_tuning):
    """The gradient rewrite and bfloat16 are used exactly when the settings say so, with the
    same results either way."""
    from advgui.core.attacks.engine import fast_logits
    from advgui.core.tfimport import keras

    def fresh() -> Classifier:
        net = keras().models.clone_model(trained_cnn.logits_model)
        net.set_weights(trained_cnn.logits_model.get_weights())
        return Classifier(net, {"name": "copy"})

    x, y = mnist.x_test[:64], mnist.y_test[:64]
    kw = {"eps": 0.1, "step_size": 0.02, "steps": 5, "random_start": False}
    results = {}
    for rewrite in (False, True):
        with tuning.overridden(conv_rewrite=rewrite):
            clf = fresh()
            assert bool(fast_logits(clf.logits_model).rewritten) is rewrite
            results[rewrite] = make_attack("pgd", **kw)(clf, x, labels=y).x_adv
    assert np.mean(np.abs(results[True] - results[False]) < 1e-4) > 0.99
    with tuning.overridden(bf16_available=False):
        res = make_attack("pgd", precision="bfloat16", **kw)(fresh(), x, labels=y)
    assert res.extra["precision"] == "float32"
    assert np.mean(np.abs(res.x_adv - results[False]) < 1e-4) > 0.99
    if tuning.detect_cpu().bf16_hardware:
        with tuning.overridden(bf16_available=True):
            res = make_attack("pgd", precision="bfloat16", **kw)(fresh(), x, labels=y)
        assert res.extra["precision"] == "bfloat16"


def test_the_device_decides_the_cpu_paths(fresh_tuning, isolated_home, monkeypatch, caplog):
    """With TensorFlow's device list showing a GPU, every CPU-only path is off (and the
    attacks' gradient rewrite with it); on this CPU, the same cached timings turn them on."""
    import logging

    from advgui.core.attacks.engine import fast_logits
    from advgui.core.models import build_model
    from advgui.core.tfimport import tf

    t = tf()
    cpu, version, key, path = tuning._context()
    assert tuning.write_cache(path, key, cpu, version, FAST)
    on_cpu = tuning.settings()
    assert on_cpu.device == f"CPU: {cpu.model}" and on_cpu.conv_rewrite
    assert on_cpu.background_nice == (5 if sys.platform.startswith("linux") else 0)
    assert bool(fast_logits(build_model("cnn")).rewritten)

    real = t.config.list_physical_devices
    fake = [t.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")]

    def devices(device_type=None):
        return fake if device_type == "GPU" else real(device_type)

    monkeypatch.setattr(t.config, "list_physical_devices", devices)
    tuning.reset()
    with caplog.at_level(logging.INFO, logger="advgui.core.tuning"):
        on_gpu = tuning.settings()
        tuning.settings()
    assert on_gpu.device == "GPU: /physical_device:GPU:0"
    assert tuning.device_name() == on_gpu.device == tuning.loaded_device()
    assert not on_gpu.conv_rewrite and on_gpu.one_thread_max_batch == 0
    assert not on_gpu.strided_rewrite and on_cpu.attack_streams == (2 if cpu.cores > 1 else 1)
    assert on_gpu.attack_streams == 1
    assert not on_gpu.bf16_available and not on_gpu.pool_override
    assert on_gpu.background_nice == 0
    assert all("GPU:0" in on_gpu.reasons[k] for k in on_gpu.reasons)
    assert on_gpu.timings == FAST  # read, not measured again: nothing CPU to time
    logged = [r.getMessage() for r in caplog.records if "tuning: device:" in r.getMessage()]
    assert logged == ["tuning: device: GPU: /physical_device:GPU:0"]  # once
    assert not fast_logits(build_model("cnn")).rewritten
    # ADVGUI_TUNE still wins on a GPU.
    monkeypatch.setenv("ADVGUI_TUNE", "conv_rewrite=1")
    tuning.reset()
    assert tuning.settings().conv_rewrite


def test_json_records_name_the_device(tmp_path, fresh_tuning):
    """A command's JSON record and a stored result say what ran them."""
    from advgui.commands.common import dumps_json
    from advgui.core.results import RESULT_JSON, ResultStore
    from advgui.core.tfimport import tf

    tf()
    device = tuning.device_name()
    assert device.startswith(("CPU: ", "GPU: "))
    assert json.loads(dumps_json({"accuracy": 0.9}))["device"] == device
    assert json.loads(dumps_json({"device": "kept"}))["device"] == "kept"
    entry = ResultStore(tmp_path).add("attack", {"success": 1})
    assert json.loads((entry.path / RESULT_JSON).read_text())["device"] == device
