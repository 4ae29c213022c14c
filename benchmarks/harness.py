"""What every benchmark shares: timing (warm-up, medians over repeats, A/B side by side), the
machine's description, MNIST, the reference CNN and ART's view of it.

Figures from two machines can be read side by side only with the machine they came from, so
every benchmark starts with :func:`print_machine`: CPU model, the ISA flags that decide
advgui's paths (AVX2, AVX-512, AMX, bf16), cores, load, TensorFlow and oneDNN versions, the ISA
oneDNN dispatches to, and the measured float32 matmul rate (the ceiling attack and training
FLOP rates are shown against). The choices ``advgui.core.tuning`` made are printed too.

Timing a shared machine: comparisons run in one process, alternated (:func:`side_by_side`),
and report medians; CPU seconds are printed where they say more than wall seconds.

Run a benchmark as ``python benchmarks/bench_X.py`` from the checkout (this folder and the
checkout are put on ``sys.path``).
"""

from __future__ import annotations

import functools
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the checkout's advgui, not an installed one
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Seconds of each repeat (after the warm-up calls) and the last call's result."""

    seconds: list[float]
    result: Any = None
    cpu_seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_seconds) if self.cpu_seconds else float("nan")

    def spread(self) -> str:
        """``median (min-max, n)`` for a line of output."""
        s = self.seconds
        return f"{self.median:.3f} s (range {min(s):.3f}-{max(s):.3f}, n={len(s)})"


def timed(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> Timing:
    """Call ``fn`` ``warmup`` times untimed (tracing, caches), then ``repeats`` times timed."""
    result = None
    for _ in range(warmup):
        result = fn()
    out = Timing([], result)
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out.result = fn()
        out.seconds.append(time.perf_counter() - t0)
        out.cpu_seconds.append(time.process_time() - c0)
    return out


def side_by_side(
    fns: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1
) -> dict[str, Timing]:
    """Time several functions in rounds (each once per round, in turn), so that a load that
    comes and goes on a shared machine falls on all of them alike; medians per function."""
    out = {name: Timing([]) for name in fns}
    for name, fn in fns.items():
        for _ in range(warmup):
            out[name].result = fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            out[name].result = fn()
            out[name].seconds.append(time.perf_counter() - t0)
            out[name].cpu_seconds.append(time.process_time() - c0)
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def paired_share(
    work_flops: float, timing: Timing, probe: MatmulProbe, probe_timing: Timing, *, cpu: bool
) -> float:
    """Median over the rounds of :func:`side_by_side` of the FLOP rate of ``timing`` over the
    matmul probe's in the same round. ``cpu``: rates per CPU second of this process, which
    cancels the share of the cores other processes took (a loaded shared machine); else per
    wall second (the plain figure, right on an idle machine)."""
    ours = timing.cpu_seconds if cpu else timing.seconds
    ref = probe_timing.cpu_seconds if cpu else probe_timing.seconds
    flops = probe.gflops(1.0) * 1e9  # the probe's work
    return statistics.median((work_flops / t) / (flops / p) for t, p in zip(ours, ref, strict=True))


# --------------------------------------------------------------------------- the machine


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """Best float32 matmul rate of this CPU through TensorFlow (the ceiling of its convs)."""
    probe = MatmulProbe(size, count=1)
    return probe.gflops(timed(probe, repeats=repeats, warmup=2).best)


class MatmulProbe:
    """A fixed float32 matmul workload, to time beside a measured function in
    :func:`side_by_side`: the share of the matmul rate is then taken in the same rounds, under
    the same load (a shared 2-core machine's rate varies nearly 2x with its neighbours)."""

    def __init__(self, size: int = 1024, count: int = 8) -> None:
        from advgui.core.tfimport import tf

        t = tf()
        self.size, self.count = size, count
        a = t.random.normal([size, size])
        b = t.random.normal([size, size]) / size**0.5  # keeps the chain's norms steady

        @t.function
        def run() -> Any:
            out = a
            for _ in range(count):  # a chain: each product needs the last (none is merged away)
                out = t.linalg.matmul(out, b)
            return out

        self._run = run

    def __call__(self) -> None:
        self._run().numpy()

    def gflops(self, seconds: float) -> float:
        return 2 * self.size**3 * self.count / seconds / 1e9


@functools.lru_cache(maxsize=1)
def onednn_info() -> dict[str, str]:
    """oneDNN's version and the ISA it dispatches to, as it prints them itself: TensorFlow
    does not expose them, so a child process runs one matmul with ``ONEDNN_VERBOSE=1``."""
    code = "import tensorflow as tf; tf.linalg.matmul(tf.ones([64, 64]), tf.ones([64, 64])).numpy()"
    env = dict(os.environ, ONEDNN_VERBOSE="1", TF_CPP_MIN_LOG_LEVEL="3")
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return {"version": f"unknown ({type(err).__name__})", "isa": "unknown"}
    version = re.search(r"info,oneDNN v(\S+)", out)
    isa = re.search(r"info,cpu,isa:(.+)", out)
    return {
        "version": version.group(1) if version else "unknown (oneDNN off?)",
        "isa": isa.group(1).strip() if isa else "unknown",
    }


@dataclass
class Machine:
    cpu: Any  # advgui.core.tuning.Cpu
    tensorflow: str
    onednn: dict[str, str]
    matmul_gflops: float
    load: float
    extra: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        flags = self.cpu.flags
        isa = ", ".join(
            f"{name} {'yes' if any(f in flags for f in group) else 'no'}"
            for name, group in (
                ("AVX2", ("avx2",)),
                ("AVX-512", ("avx512f",)),
                ("AMX", ("amx_tile",)),
                ("bf16", ("avx512_bf16", "amx_bf16", "bf16")),
                ("NEON", ("asimd",)),
            )
        )
        lines = [
            f"CPU: {self.cpu.model} ({self.cpu.arch}), {self.cpu.cores} core(s) for this "
            f"process, load average {self.load:.1f}",
            f"ISA: {isa} [flags from {self.cpu.flags_from}]",
            f"TensorFlow {self.tensorflow}, oneDNN {self.onednn['version']} "
            f"(dispatching to: {self.onednn['isa']})",
        ]
        if self.matmul_gflops == self.matmul_gflops:  # not NaN: measured
            lines.append(
                f"float32 matmul, TensorFlow 2048^2: {self.matmul_gflops:.0f} GFLOP/s (best of 10;"
                " FLOP rates below are shown against the rate measured beside them)"
            )
        lines += [f"{k}: {v}" for k, v in self.extra.items()]
        return lines


def machine(*, light: bool = False) -> Machine:
    """Describe this machine. Loads TensorFlow for the matmul rate and advgui's tuning, unless
    ``light`` (for a benchmark that times TensorFlow's import itself)."""
    from advgui.core import tuning

    info = onednn_info()
    extra = {}
    rate = float("nan")
    version = tuning.tensorflow_version()
    if not light:
        from advgui.core.tfimport import tf

        version = tf().__version__
        rate = matmul_gflops()
        chosen = tuning.settings()
        extra["device"] = chosen.device
        extra["advgui tuning"] = (
            f"conv_rewrite={int(chosen.conv_rewrite)}, strided_rewrite="
            f"{int(chosen.strided_rewrite)}, attack_streams={chosen.attack_streams}, "
            f"one_thread_max_batch="
            f"{chosen.one_thread_max_batch}, bf16_available={int(chosen.bf16_available)}, "
            f"pool_override={int(chosen.pool_override)} "
            f"(TF_OVERRIDE_GLOBAL_THREADPOOL={os.environ.get('TF_OVERRIDE_GLOBAL_THREADPOOL')})"
        )
    return Machine(
        cpu=tuning.detect_cpu(),
        tensorflow=version,
        onednn=info,
        matmul_gflops=rate,
        load=os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
        extra=extra,
    )


DEVICES = ("auto", "cpu", "gpu")


def add_device_option(parser: Any) -> None:
    """``--device auto|cpu|gpu`` for a benchmark (auto: a GPU where TensorFlow sees one)."""
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where TensorFlow runs: auto (a GPU if there is one), cpu (GPUs hidden), gpu "
        "(refused without one); printed with the machine",
    )


def use_device(device: str) -> str:
    """Apply ``--device`` before any TensorFlow work; returns what runs it."""
    from advgui.core import tuning
    from advgui.core.tfimport import tf

    t = tf()
    if device == "cpu":
        t.config.set_visible_devices([], "GPU")
        tuning.reset()
    name = tuning.device_name()
    if device == "gpu" and not name.startswith("GPU"):
        raise SystemExit(f"--device gpu: TensorFlow sees no GPU here ({name})")
    print(f"device: {name} (--device {device})", flush=True)
    return name


def print_machine(**kwargs: Any) -> Machine:
    m = machine(**kwargs)
    print("=== machine ===")
    for line in m.lines():
        print(line)
    print(flush=True)
    return m


# --------------------------------------------------------------------------- data and models


def data_dir() -> Path:
    """``$ADVGUI_DATA``, else the shared MNIST beside the checkout."""
    env = os.environ.get("ADVGUI_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "mnist"


def mnist(path: str | Path | None = None) -> Any:
    from advgui.core.data import load_mnist

    return load_mnist(path or data_dir(), use_download=False, use_npm=False)


def bench_cnn(data: Any) -> Any:
    """The CNN the attack benchmarks attack when no --model is given: one epoch with
    ``model.fit`` on 20,000 images (about 98%), the same in every benchmark and run."""
    from advgui.core import models
    from advgui.core.tfimport import keras

    k = keras()
    net = models.build_model("cnn", seed=0)
    net.compile(
        optimizer=k.optimizers.Adam(2e-3),
        loss=k.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    net.fit(data.x_train[:20000], data.y_train[:20000], batch_size=128, epochs=1, verbose=0)
    return models.Classifier(net, {"name": "bench-cnn"})


def load_or_bench_cnn(path: str | None, data: Any) -> Any:
    from advgui.core import models

    return models.load_model(path) if path else bench_cnn(data)


def art_classifier(clf: Any) -> Any:
    """ART 1.20's estimator on the same logits (raises ImportError without ART)."""
    from art.estimators.classification import TensorFlowV2Classifier

    from advgui.core.tfimport import keras

    return TensorFlowV2Classifier(
        clf.logits_model,
        nb_classes=10,
        input_shape=(28, 28, 1),
        loss_object=keras().losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )


def layer_flops(model: Any) -> list[tuple[str, float]]:
    """(kind, multiply-adds x 2 for one image) of each Conv2D and Dense layer, in order."""
    out = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            shape = layer.output.shape  # (None, h, w, c)
            kh, kw = layer.kernel_size
            out.append(
                (kind, 2.0 * shape[1] * shape[2] * shape[3] * kh * kw * layer.input.shape[-1])
            )
        elif kind == "Dense":
            out.append((kind, 2.0 * layer.input.shape[-1] * layer.units))
    return out


def forward_flops(model: Any) -> float:
    """FLOPs of one forward pass of one image (Conv2D and Dense layers)."""
    return sum(f for _, f in layer_flops(model))


def attack_step_flops(model: Any) -> float:
    """One gradient step of an attack on one image: the forward pass and the backward pass to
    the input (each layer's input gradient costs about its forward pass)."""
    return 2 * forward_flops(model)


def train_step_flops(model: Any) -> float:
    """One training step on one image: forward, weight gradients (one forward's worth per
    layer) and input gradients of every layer but the first (nothing needs the image's)."""
    flops = layer_flops(model)
    return 3 * sum(f for _, f in flops) - (flops[0][1] if flops else 0.0)


def interpret() -> str:
    return (
        "Figures are medians on this machine; compare two machines by their ratios to the "
        "references measured in the same run and by the share of the matmul rate, not by "
        "images/s."
    )
