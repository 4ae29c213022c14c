"""CPU-specific speed choices, made per machine: by the detected ISA or by a short measurement.

advgui's fast paths were tuned on one CPU (an Intel Xeon with AVX-512 and AMX) and their gains
do not carry over: bfloat16 is several times faster there and five times slower on a CPU
without bf16 instructions; the one-thread runner and the depthwise input gradient are
measured wins there, unknown elsewhere. So each path is chosen here:

- ``bf16_available``: bfloat16 gradients are offered only where the CPU has bf16 instructions
  (AVX512_BF16 or AMX-BF16 on x86, BF16 on ARM64) *and* a measured bf16 convolution beats the
  float32 one; elsewhere a bfloat16 request runs in float32.
- ``conv_rewrite``: the attacks' depthwise/flipped-kernel input gradient (attacks/engine.py)
  where it measures faster than TensorFlow's own backward-data convolution.
- ``strided_rewrite``: a strided convolution on the image itself (one channel) computed as a
  stride-1 convolution of its space-to-depth blocks (attacks/engine.py): the same numbers,
  but TensorFlow's strided backward-data convolution onto one channel ran at 6 GFLOP/s here
  (a third of the defended CNN's input gradient); on where it measures faster.
- ``attack_streams``: how many shards of an attack's rows run at a time, in threads
  (attacks/streams.py): one stream's small serial ops leave cores idle that a second fills;
  2 where two concurrent halves of a CNN's gradient steps measure faster than one batch.
- ``one_thread_max_batch``: attacks on batches up to this size run on a one-thread session
  (0: never), from timing both on one image and on :data:`ONE_THREAD_LARGEST` images.
- ``pool_override``: ``TF_OVERRIDE_GLOBAL_THREADPOOL`` (sessions get their own pool, which the
  one-thread runner needs). It must be set before TensorFlow loads, so it follows the cached
  one-thread measurement; on a machine never measured it is on, so that one can be made.
- ``background_nice``: niceness of TensorFlow's and the GUI workers' threads (a table: Linux
  sets it per thread, elsewhere it would slow the whole process).
- ``mixed_policy``: what ``--precision mixed`` runs as (core/precision.py): Keras's
  ``mixed_float16`` on a GPU (tensor cores), ``mixed_bfloat16`` on a CPU with bf16 instructions
  (AMX/AVX512-BF16 run it in hardware), None (refused) on a CPU without them, where bfloat16 is
  emulated and slower than float32.

All of these are CPU paths: where TensorFlow sees a GPU (``device_name``), each is off, with
that reason (before TensorFlow loads, an NVIDIA driver plus TensorFlow's CUDA wheels count).

The measurement (about 2 s on a fresh machine) runs at first use, once per machine (CPU model,
flags, core count) and TensorFlow version; its timings are cached as JSON in the user cache.
The cache file is read as hostile input: bounded, validated, ignored when anything is off.
``ADVGUI_TUNE`` (e.g. ``conv_rewrite=0,attack_streams=1,bf16=0``) overrides any choice. Every
choice carries its reason; they are logged once and ``advgui selftest`` prints them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Bumped when what is measured changes: older cache files are then ignored.
SCHEMA = 1
#: A cache file is a few hundred bytes; anything bigger is not ours.
CACHE_MAX_BYTES = 16 * 1024
#: Only the first processor's block of /proc/cpuinfo is read (a few KB on any machine).
CPUINFO_MAX_BYTES = 256 * 1024
#: Largest batch the one-thread runner is measured on (on the Xeon it won up to about 8; the
#: attacks never use it beyond ``attacks.engine.ONE_THREAD_MAX_BATCH``).
ONE_THREAD_LARGEST = 8
#: Images the streams measurement runs on (as one batch and as two concurrent halves).
STREAMS_BATCH = 128
#: The ISA flags that decide something here, by the names Linux's /proc/cpuinfo gives them.
RELEVANT_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
    "asimd", "sve", "bf16",
)  # fmt: skip
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
#: Measured timings: (name, number of values, what the values are).
MEASUREMENTS = {
    "one_thread_1": "seconds for 20 CNN steps on 1 image: (one thread, shared pool)",
    "one_thread_8": f"seconds for 20 CNN steps on {ONE_THREAD_LARGEST} images: (one thread, pool)",
    "conv_input_grad": "seconds for the CNN's conv input gradients, batch 64: (rewrite, plain)",
    "bf16_conv": "seconds for a conv forward + input gradient, batch 64: (bfloat16, float32)",
    "strided_conv_grad": "seconds for a 4x4 stride-2 conv on the image, forward + input "
    "gradient, batch 256: (space-to-depth, plain)",
    "streams": f"seconds for 5 CNN steps on {STREAMS_BATCH} images: (two concurrent halves, "
    "one batch)",
}
#: Keys ADVGUI_TUNE may set, and how their values are read.
OVERRIDES: dict[str, Callable[[str], Any]] = {
    "conv_rewrite": lambda v: _flag(v),
    "strided_rewrite": lambda v: _flag(v),
    "one_thread_max_batch": lambda v: _int_in(v, 0, 4096),
    "attack_streams": lambda v: _int_in(v, 1, 16),
    "bf16": lambda v: _flag(v),
    "pool_override": lambda v: _flag(v),
    "background_nice": lambda v: _int_in(v, 0, 19),
}


def _flag(text: str) -> bool:
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not 0/1")


def _int_in(text: str, lo: int, hi: int) -> int:
    value = int(text)
    if not lo <= value <= hi:
        raise ValueError(f"{value} is outside {lo}..{hi}")
    return value


# --------------------------------------------------------------------------- the CPU


@dataclass(frozen=True)
class Cpu:
    """What decides the choices: the CPU's model, its relevant ISA flags, the cores we get."""

    model: str
    arch: str
    flags: frozenset[str]
    cores: int
    #: Where the flags came from ("/proc/cpuinfo", "numpy", "sysctl", "none").
    flags_from: str = "none"

    @property
    def bf16_hardware(self) -> bool:
        return bool(self.flags & BF16_FLAGS)

    def describe(self) -> str:
        shown = [f for f in RELEVANT_FLAGS if f in self.flags]
        return (
            f"{self.model} ({self.arch}), {self.cores} core(s), ISA: "
            f"{' '.join(shown) or 'none of ' + '/'.join(RELEVANT_FLAGS[:4])}"
            f" [from {self.flags_from}]"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "arch": self.arch,
            "flags": sorted(self.flags),
            "cores": self.cores,
            "flags_from": self.flags_from,
        }


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model, relevant flags) from the first processor block of a /proc/cpuinfo text (x86's
    ``model name``/``flags``, ARM64's ``CPU implementer``/``CPU part``/``Features``)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:  # the end of the first processor's block
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    words = set((fields.get("flags") or fields.get("features") or "").split())
    model = fields.get("model name") or fields.get("hardware") or ""
    if not model and "cpu implementer" in fields:
        model = f"ARM implementer {fields['cpu implementer']} part {fields.get('cpu part', '?')}"
    return model[:200], frozenset(f for f in RELEVANT_FLAGS if f in words)


def _numpy_flags() -> frozenset[str]:
    """NumPy's own runtime CPU dispatch flags (every OS; it does not report AMX or ARM BF16)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as found
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as found
        except ImportError:
            return frozenset()
    names = {
        "AVX2": "avx2", "FMA3": "fma", "AVX512F": "avx512f", "AVX512VNNI": "avx512_vnni",
        "AVX512BF16": "avx512_bf16", "ASIMD": "asimd", "SVE": "sve",
    }  # fmt: skip
    return frozenset(ours for np_name, ours in names.items() if found.get(np_name))


def _sysctl(name: str) -> str:
    try:
        out = subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=2, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()[:200] if out.returncode == 0 else ""


def detect_cpu() -> Cpu:
    """This machine's CPU: Linux's /proc/cpuinfo; elsewhere NumPy's flags (plus, on macOS,
    ``sysctl`` for the model and ARM's BF16)."""
    arch = platform.machine().lower() or "unknown"
    cores = _cores()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            model, flags = parse_cpuinfo(fh.read(CPUINFO_MAX_BYTES))
        if flags or model:
            return Cpu(model or platform.processor() or arch, arch, flags, cores, "/proc/cpuinfo")
    except OSError:
        pass
    flags = set(_numpy_flags())
    model = platform.processor() or arch
    source = "numpy" if flags else "none"
    if sys.platform == "darwin":
        model = _sysctl("machdep.cpu.brand_string") or model
        if _sysctl("hw.optional.arm.FEAT_BF16") == "1":
            flags.add("bf16")
            source = "numpy+sysctl"
    return Cpu(model, arch, frozenset(flags), cores, source)


def tensorflow_version() -> str:
    """TensorFlow's version without importing it (its metadata), else the loaded module's."""
    mod = sys.modules.get("tensorflow")
    if mod is not None and getattr(mod, "__version__", None):
        return str(mod.__version__)
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("tensorflow")
        except PackageNotFoundError:
            return version("tensorflow-cpu")
    except Exception:  # no metadata (e.g. a frozen app built without it)
        return "unknown"


def machine_key(cpu: Cpu, tf_version: str) -> str:
    text = json.dumps([SCHEMA, cpu.model, cpu.arch, sorted(cpu.flags), cpu.cores, tf_version])
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


# --------------------------------------------------------------------------- the device


def gpu_names() -> list[str]:
    """The GPUs TensorFlow sees (imports it): their names where the driver tells them."""
    from advgui.core.tfimport import tf

    t = tf()
    names = []
    for dev in t.config.list_physical_devices("GPU"):
        try:
            details = t.config.experimental.get_device_details(dev)
        except Exception:  # a device without details: its TensorFlow name
            details = {}
        names.append(str(details.get("device_name") or dev.name))
    return names


_device: str | None = None


def device_name() -> str:
    """What runs the work, for every record and view: ``GPU: NAME`` or ``CPU: MODEL`` (asked
    of TensorFlow once per process; imports it)."""
    global _device
    if _device is None:
        gpus = gpu_names()
        _device = "GPU: " + ", ".join(gpus) if gpus else f"CPU: {detect_cpu().model}"
    return _device


def loaded_device() -> str | None:
    """:func:`device_name` where TensorFlow is already loaded, else None (a record of work
    that never touched a model does not pay TensorFlow's start-up for one field)."""
    if "tensorflow" not in sys.modules:
        return None
    try:
        return device_name()
    except Exception:  # TensorFlow half-loaded (a failed import): nothing to tell
        return None


def gpu_likely() -> bool:
    """Before TensorFlow loads: an NVIDIA driver and TensorFlow's CUDA wheels (the ``gpu``
    extra) are present, so TensorFlow will most likely run on the GPU."""
    import importlib.util

    if not os.path.exists("/dev/nvidiactl"):
        return False
    try:
        return importlib.util.find_spec("nvidia.cudnn") is not None
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------- the cache


def cache_path(key: str) -> Path:
    from advgui.core import paths

    return paths.cache_dir() / "tuning" / f"{key}.json"


def _valid_timing(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
        and all(0 < v < 60 for v in value)
    )


def read_cache(path: Path, key: str) -> dict[str, list[float]] | None:
    """The measured timings stored for ``key``; None when the file is missing, too big,
    not JSON, of another schema or machine, or holds anything that is not a timing pair."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(CACHE_MAX_BYTES + 1)
    except OSError:
        return None
    if len(raw) > CACHE_MAX_BYTES:
        log.warning("tuning cache %s is larger than %d bytes: ignored", path, CACHE_MAX_BYTES)
        return None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        log.warning("tuning cache %s is not valid JSON: ignored", path)
        return None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or doc.get("key") != key:
        log.warning("tuning cache %s is of another schema or machine: ignored", path)
        return None
    timings = doc.get("timings")
    if not isinstance(timings, dict) or not set(timings) <= set(MEASUREMENTS):
        log.warning("tuning cache %s has unknown entries: ignored", path)
        return None
    if not all(_valid_timing(v) for v in timings.values()):
        log.warning("tuning cache %s holds values that are not timings: ignored", path)
        return None
    return {k: [float(a), float(b)] for k, (a, b) in timings.items()}


def write_cache(path: Path, key: str, cpu: Cpu, tf_version: str, timings: dict) -> bool:
    """Store the timings (atomically); False if the cache folder cannot be written."""
    from advgui.core.errors import ExportError
    from advgui.core.fileio import atomic_write_text

    doc = {
        "schema": SCHEMA,
        "key": key,
        "cpu": cpu.to_dict(),
        "tensorflow": tf_version,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "timings": timings,
        "what": {k: MEASUREMENTS[k] for k in timings},
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(doc, indent=1))
    except (OSError, ExportError) as err:
        # Measured again next time: the log file keeps it, the terminal and the CLI's one
        # line about the user's own write (a full disk) are not the place.
        log.info("tuning cache %s not written: %s", path, err)
        return False
    return True


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Settings:
    """The choices, each with the reason it was made."""

    cpu: Cpu
    tensorflow: str
    conv_rewrite: bool
    one_thread_max_batch: int
    bf16_available: bool
    pool_override: bool
    background_nice: int
    reasons: dict[str, str] = field(default_factory=dict)
    timings: dict[str, list[float]] = field(default_factory=dict)
    #: "measured now (0.6 s)", "cache FILE", or "not measured" (before TensorFlow loads).
    source: str = "not measured"
    #: What runs the work: ``CPU: MODEL`` or ``GPU: NAME`` (every CPU-only path is off there).
    device: str = "CPU"
    strided_rewrite: bool = False
    #: Keras dtype policy of ``--precision mixed`` here; None: refused (see reasons["mixed"]).
    mixed_policy: str | None = None
    #: Shards of an attack's rows run at a time (1: the whole batch at once).
    attack_streams: int = 1

    @property
    def one_thread(self) -> bool:
        return self.one_thread_max_batch > 0

    def lines(self) -> list[str]:
        """One line per choice, for the log and ``advgui selftest``."""
        return [
            f"device: {self.device}",
            f"CPU: {self.cpu.describe()}; TensorFlow {self.tensorflow}; timings: {self.source}",
            f"conv_rewrite={int(self.conv_rewrite)}: {self.reasons.get('conv_rewrite', '')}",
            f"strided_rewrite={int(self.strided_rewrite)}: "
            f"{self.reasons.get('strided_rewrite', '')}",
            f"attack_streams={self.attack_streams}: {self.reasons.get('attack_streams', '')}",
            f"one_thread_max_batch={self.one_thread_max_batch}: "
            f"{self.reasons.get('one_thread_max_batch', '')}",
            f"bf16_available={int(self.bf16_available)}: {self.reasons.get('bf16', '')}",
            f"pool_override={int(self.pool_override)}: {self.reasons.get('pool_override', '')}",
            f"background_nice={self.background_nice}: {self.reasons.get('background_nice', '')}",
            f"mixed_policy={self.mixed_policy or 'refused'}: {self.reasons.get('mixed', '')}",
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu.to_dict(),
            "tensorflow": self.tensorflow,
            "conv_rewrite": self.conv_rewrite,
            "strided_rewrite": self.strided_rewrite,
            "one_thread_max_batch": self.one_thread_max_batch,
            "attack_streams": self.attack_streams,
            "bf16_available": self.bf16_available,
            "pool_override": self.pool_override,
            "background_nice": self.background_nice,
            "reasons": dict(self.reasons),
            "timings": dict(self.timings),
            "source": self.source,
            "device": self.device,
            "mixed_policy": self.mixed_policy,
        }


def _ratio(pair: list[float]) -> float:
    return pair[0] / pair[1]


def _faster(timings: dict[str, list[float]], key: str, what: str) -> tuple[bool, str]:
    """A rewrite's choice from its (rewrite, plain) timing, and the reason: on only where it
    measured faster; not measured, TensorFlow's own path."""
    pair = timings.get(key)
    if pair is None:
        return False, "not measured yet: TensorFlow's own gradient"
    return pair[0] < pair[1], (
        f"measured: {what} {1e3 * pair[0]:.1f} ms vs plain {1e3 * pair[1]:.1f} ms "
        f"({_ratio(pair):.2f}x the time)"
    )


def decide(
    cpu: Cpu,
    timings: dict[str, list[float]],
    *,
    tf_version: str = "unknown",
    override_active: bool = True,
    platform_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    source: str = "not measured",
    device: str = "CPU",
) -> Settings:
    """The choices for ``cpu`` from measured ``timings`` (any subset of :data:`MEASUREMENTS`;
    a missing one leaves its path at the safe setting). Pure: no measuring, no I/O.

    On a GPU (``device`` starting with ``GPU``) every CPU-only path is off: each was measured
    faster on a CPU only, and on a GPU the work is not on the CPU's threads at all."""
    platform_name = sys.platform if platform_name is None else platform_name
    reasons: dict[str, str] = {}
    if device.startswith("GPU"):
        return _decide_gpu(cpu, timings, tf_version, overrides or {}, source, device)

    conv_rewrite, reasons["conv_rewrite"] = _faster(timings, "conv_input_grad", "rewrite")
    strided_rewrite, reasons["strided_rewrite"] = _faster(
        timings, "strided_conv_grad", "space-to-depth"
    )

    pair = timings.get("streams")
    if cpu.cores <= 1:
        streams, reasons["attack_streams"] = 1, "one core: nothing to overlap"
    elif pair is None:
        streams, reasons["attack_streams"] = 1, "not measured yet: one batch"
    else:
        streams = 2 if pair[0] < pair[1] else 1
        reasons["attack_streams"] = (
            f"measured: two concurrent halves {_ratio(pair):.2f}x one batch's time"
        )

    one, eight = timings.get("one_thread_1"), timings.get("one_thread_8")
    if cpu.cores <= 1:
        one_max = 0
        reasons["one_thread_max_batch"] = "one core: the shared pool already has one thread"
    elif one is None:
        one_max = 0
        reasons["one_thread_max_batch"] = (
            "not measured yet: the shared pool"
            if override_active
            else "TF_OVERRIDE_GLOBAL_THREADPOOL is off in this process: not measurable, pool"
        )
    else:
        one_max = 0
        if one[0] < one[1]:
            one_max = ONE_THREAD_LARGEST if eight is not None and eight[0] < eight[1] else 1
        detail = f"1 image {_ratio(one):.2f}x the pool's time"
        if eight is not None:
            detail += f", {ONE_THREAD_LARGEST} images {_ratio(eight):.2f}x"
        reasons["one_thread_max_batch"] = f"measured: one thread {detail}"
        if one_max and not override_active:
            one_max = 0  # a one-thread session would share the process's pool: no gain
            reasons["one_thread_max_batch"] += (
                "; but TF_OVERRIDE_GLOBAL_THREADPOOL is off in this process"
            )

    bf = timings.get("bf16_conv")
    if not cpu.bf16_hardware:
        bf16 = False
        reasons["bf16"] = "the CPU has no bf16 instructions (AVX512_BF16, AMX-BF16, ARM BF16)"
    elif bf is None:
        bf16 = False
        reasons["bf16"] = "bf16 instructions present, not measured yet: float32"
    else:
        bf16 = bf[0] < bf[1]
        reasons["bf16"] = (
            f"bf16 instructions present; measured: bfloat16 {_ratio(bf):.2f}x float32's time"
        )

    if cpu.cores <= 1:
        pool = False
        reasons["pool_override"] = "one core: no one-thread sessions to serve"
    elif one is None:
        pool = True
        reasons["pool_override"] = "not measured on this machine yet: on, so that it can be"
    else:
        pool = one[0] < one[1]
        reasons["pool_override"] = (
            "on for the one-thread runner" if pool else "off: one thread measured no faster"
        )

    if platform_name.startswith("linux"):
        from advgui.core.tfimport import BACKGROUND_NICE

        nice = BACKGROUND_NICE
        reasons["background_nice"] = (
            "Linux sets it per thread: the GUI thread gets a core at once while TensorFlow "
            "uses all of them"
        )
    else:
        nice = 0
        reasons["background_nice"] = "niceness is per process here: it would slow the window too"

    if cpu.bf16_hardware:
        mixed: str | None = "mixed_bfloat16"
        reasons["mixed"] = "bf16 instructions present: Keras's mixed_bfloat16 policy"
    else:
        mixed = None
        reasons["mixed"] = (
            "refused: the CPU has no bf16 instructions (AVX512_BF16, AMX-BF16, ARM BF16), "
            "so bfloat16 would be emulated and slower than float32"
        )

    chosen = {
        "conv_rewrite": conv_rewrite,
        "strided_rewrite": strided_rewrite,
        "attack_streams": streams,
        "one_thread_max_batch": one_max,
        "bf16": bf16,
        "pool_override": pool,
        "background_nice": nice,
    }
    for name, value in (overrides or {}).items():
        if name == "bf16" and value and not cpu.bf16_hardware:
            reasons["bf16"] += " (ADVGUI_TUNE asked for bf16: refused, no hardware)"
            continue
        chosen[name] = value
        reasons[name] = f"set by ADVGUI_TUNE (else: {reasons[name]})"
    return _make_settings(cpu, tf_version, chosen, reasons, timings, source, device, mixed)


def _decide_gpu(
    cpu: Cpu,
    timings: dict[str, list[float]],
    tf_version: str,
    overrides: dict[str, Any],
    source: str,
    device: str,
) -> Settings:
    """The choices on a GPU: the CPU-only paths off, each with why; ADVGUI_TUNE still wins."""
    gpu = device.removeprefix("GPU: ")
    reasons = {
        "conv_rewrite": f"{gpu}: TensorFlow's own (cuDNN) gradient; the rewrite was only "
        "measured faster on CPUs",
        "strided_rewrite": f"{gpu}: TensorFlow's own (cuDNN) gradient; the rewrite was only "
        "measured faster on CPUs",
        "one_thread_max_batch": f"{gpu}: the ops run on the GPU, not on the CPU's thread pool",
        "attack_streams": f"{gpu}: one stream (the GPU runs one batch's kernels in turn)",
        "bf16": f"{gpu}: float32 (the bfloat16 path is the CPU's bf16 instructions)",
        "pool_override": f"{gpu}: no one-thread sessions to serve",
        "background_nice": f"{gpu}: the GPU does the work; the CPU threads only feed it",
        "mixed": f"{gpu}: Keras's mixed_float16 policy (float16 compute, dynamic loss scaling "
        "in training)",
    }
    chosen: dict[str, Any] = {
        "conv_rewrite": False,
        "strided_rewrite": False,
        "attack_streams": 1,
        "one_thread_max_batch": 0,
        "bf16": False,
        "pool_override": False,
        "background_nice": 0,
    }
    for name, value in overrides.items():
        if name == "bf16":
            continue  # the CPU's bf16 path has no meaning here
        chosen[name] = value
        reasons[name] = f"set by ADVGUI_TUNE (else: {reasons[name]})"
    return _make_settings(
        cpu, tf_version, chosen, reasons, timings, source, device, "mixed_float16"
    )


def _make_settings(
    cpu: Cpu,
    tf_version: str,
    chosen: dict[str, Any],
    reasons: dict[str, str],
    timings: dict[str, list[float]],
    source: str,
    device: str,
    mixed_policy: str | None,
) -> Settings:
    """The :class:`Settings` of ``chosen`` (keyed as :data:`OVERRIDES`), CPU or GPU alike."""
    return Settings(
        cpu=cpu,
        tensorflow=tf_version,
        conv_rewrite=bool(chosen["conv_rewrite"]),
        strided_rewrite=bool(chosen["strided_rewrite"]),
        one_thread_max_batch=int(chosen["one_thread_max_batch"]),
        attack_streams=int(chosen["attack_streams"]),
        bf16_available=bool(chosen["bf16"]),
        pool_override=bool(chosen["pool_override"]),
        background_nice=int(chosen["background_nice"]),
        reasons=reasons,
        timings=dict(timings),
        source=source,
        device=device,
        mixed_policy=mixed_policy,
    )


def parse_overrides(text: str | None) -> dict[str, Any]:
    """``ADVGUI_TUNE``'s ``name=value`` pairs; a bad pair is logged and skipped."""
    out: dict[str, Any] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        try:
            if not sep or name not in OVERRIDES:
                raise ValueError(f"expected one of {', '.join(OVERRIDES)} as name=value")
            out[name] = OVERRIDES[name](value.strip().lower())
        except ValueError as err:
            log.warning("ADVGUI_TUNE: %r ignored: %s", item[:80], err)
    return out


# --------------------------------------------------------------------------- measuring


def _median_pair(a: Callable[[], Any], b: Callable[[], Any], repeats: int) -> list[float]:
    """Median seconds of ``a`` and of ``b``, run alternately (a shared machine's load then
    falls on both alike), after one warm-up call of each."""
    a()
    b()
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    ta.sort()
    tb.sort()
    return [ta[len(ta) // 2], tb[len(tb) // 2]]


def _cnn_weights(rng: Any) -> list[Any]:
    """Weights shaped like the app's CNN (5x5 conv 16, 5x5 conv 32, dense 128, 10)."""
    import numpy as np

    shapes = [(5, 5, 1, 16), (5, 5, 16, 32), (7 * 7 * 32, 128), (128, 10)]
    return [(rng.standard_normal(s) * 0.1).astype(np.float32) for s in shapes]


def measure_one_thread(rng: Any) -> dict[str, list[float]]:
    """20 compiled sign-gradient steps of a CNN shaped like the app's, on 1 and on
    :data:`ONE_THREAD_LARGEST` images: the attacks' own one-thread runner against the pool."""
    from advgui.core.attacks.engine import OneThread

    steps = _cnn_steps(rng, 20)
    one = OneThread(steps)
    out = {}
    for n, name in ((1, "one_thread_1"), (ONE_THREAD_LARGEST, "one_thread_8")):
        x = rng.uniform(0, 1, (n, 28, 28, 1)).astype("float32")
        out[name] = _median_pair(lambda x=x: one(x), lambda x=x: steps(x).numpy(), 3)
    return out


def _cnn_steps(rng: Any, count: int) -> Any:
    """``count`` compiled sign-gradient steps of a CNN shaped like the app's."""
    from advgui.core.tfimport import tf

    t = tf()
    k1, k2, d1, d2 = (t.constant(w) for w in _cnn_weights(rng))

    def step(i: Any, x: Any) -> Any:
        with t.GradientTape() as tape:
            tape.watch(x)
            h = t.nn.max_pool2d(t.nn.relu(t.nn.conv2d(x, k1, 1, "SAME")), 2, 2, "VALID")
            h = t.nn.max_pool2d(t.nn.relu(t.nn.conv2d(h, k2, 1, "SAME")), 2, 2, "VALID")
            z = t.matmul(t.nn.relu(t.matmul(t.reshape(h, [-1, 7 * 7 * 32]), d1)), d2)
            loss = t.reduce_sum(z[:, 0])
        return i + 1, t.clip_by_value(x - 0.01 * t.sign(tape.gradient(loss, x)), 0.0, 1.0)

    @t.function(input_signature=[t.TensorSpec([None, 28, 28, 1], t.float32)])
    def steps(x: Any) -> Any:
        return t.while_loop(lambda i, _: i < count, step, [t.constant(0), x])[1]

    return steps


def measure_streams(rng: Any, batch: int = STREAMS_BATCH) -> list[float]:
    """5 CNN steps on ``batch`` images as two halves in two threads at once, against one batch
    (attacks/streams.py): on the 2-core Xeon 0.90x the time."""
    from concurrent.futures import ThreadPoolExecutor

    steps = _cnn_steps(rng, 5)
    x = rng.uniform(0, 1, (batch, 28, 28, 1)).astype("float32")
    halves = (x[: batch // 2], x[batch // 2 :])
    pool = ThreadPoolExecutor(max_workers=2)

    def two() -> None:
        list(pool.map(lambda h: steps(h).numpy(), halves))

    try:
        return _median_pair(two, lambda: steps(x).numpy(), 3)
    finally:
        pool.shutdown()


def measure_conv_input_grad(rng: Any, batch: int = 64) -> list[float]:
    """Input gradients of the app's CNN's two convolutions as engine.py rewrites them
    (depthwise for the one-channel input, flipped-kernel forward conv for the other) against
    TensorFlow's backward-data convolution."""
    from advgui.core.tfimport import tf

    t = tf()
    k1, k2 = (t.constant(w) for w in _cnn_weights(rng)[:2])
    dy1 = t.constant(rng.standard_normal((batch, 28, 28, 16)).astype("float32"))
    dy2 = t.constant(rng.standard_normal((batch, 14, 14, 32)).astype("float32"))

    def flip(k: Any) -> Any:
        return t.transpose(t.reverse(k, [0, 1]), [0, 1, 3, 2])

    @t.function
    def rewrite() -> Any:
        a = t.nn.depthwise_conv2d(dy1, flip(k1), [1, 1, 1, 1], "SAME")
        b = t.nn.conv2d(dy2, flip(k2), 1, "SAME")
        return t.reduce_sum(a) + t.reduce_sum(b)

    @t.function
    def plain() -> Any:
        a = t.nn.conv2d_transpose(dy1, k1, [batch, 28, 28, 1], 1, "SAME")
        b = t.nn.conv2d_transpose(dy2, k2, [batch, 14, 14, 16], 1, "SAME")
        return t.reduce_sum(a) + t.reduce_sum(b)

    return _median_pair(lambda: rewrite().numpy(), lambda: plain().numpy(), 5)


def measure_strided_conv_grad(rng: Any, batch: int = 256) -> list[float]:
    """The defended CNN's first layer (4x4, stride 2, one channel in, 32 out), forward and
    input gradient, as engine.py rewrites it (space-to-depth) against TensorFlow's own."""
    from advgui.core.attacks.engine import space_to_depth_conv
    from advgui.core.tfimport import tf

    t = tf()
    x = t.constant(rng.uniform(0, 1, (batch, 28, 28, 1)).astype("float32"))
    k = t.constant((0.1 * rng.standard_normal((4, 4, 1, 32))).astype("float32"))
    dy = t.constant(rng.standard_normal((batch, 14, 14, 32)).astype("float32"))

    def make(conv: Callable[[Any], Any]) -> Callable[[], Any]:
        @t.function(autograph=False)
        def run() -> Any:
            with t.GradientTape() as tape:
                tape.watch(x)
                loss = t.reduce_sum(conv(x) * dy)
            return tape.gradient(loss, x)

        return lambda: run().numpy()

    return _median_pair(
        make(lambda h: space_to_depth_conv(h, k, 2, "SAME")),
        make(lambda h: t.nn.conv2d(h, k, 2, "SAME")),
        5,
    )


def measure_bf16(rng: Any, batch: int = 64) -> list[float]:
    """The CNN's second convolution, forward and input gradient, in bfloat16 and float32."""
    from advgui.core.tfimport import tf

    t = tf()
    k = _cnn_weights(rng)[1]
    h = rng.uniform(0, 1, (batch, 14, 14, 16)).astype("float32")
    dy = rng.standard_normal((batch, 14, 14, 32)).astype("float32")

    def make(dtype: Any) -> Any:
        kk, hh, dd = (t.constant(v, dtype) for v in (k, h, dy))

        @t.function
        def run() -> Any:
            y = t.nn.conv2d(hh, kk, 1, "SAME")
            g = t.nn.conv2d_transpose(dd, kk, [batch, 14, 14, 16], 1, "SAME")
            return t.reduce_sum(t.cast(y, t.float32)) + t.reduce_sum(t.cast(g, t.float32))

        return lambda: run().numpy()

    return _median_pair(make(t.bfloat16), make(t.float32), 5)


def calibrate(cpu: Cpu, have: dict[str, list[float]]) -> dict[str, list[float]]:
    """Measure what ``have`` lacks (eagerly: the caller checks that it is not tracing)."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = dict(have)
    todo: list[tuple[str, Callable[[Any], dict[str, list[float]]]]] = []
    if "conv_input_grad" not in out:
        todo.append(("conv_input_grad", lambda r: {"conv_input_grad": measure_conv_input_grad(r)}))
    if "strided_conv_grad" not in out:
        todo.append(
            ("strided_conv_grad", lambda r: {"strided_conv_grad": measure_strided_conv_grad(r)})
        )
    if cpu.bf16_hardware and "bf16_conv" not in out:
        todo.append(("bf16_conv", lambda r: {"bf16_conv": measure_bf16(r)}))
    if cpu.cores > 1 and "streams" not in out:
        todo.append(("streams", lambda r: {"streams": measure_streams(r)}))
    if cpu.cores > 1 and _override_active() and "one_thread_1" not in out:
        todo.append(("one_thread", measure_one_thread))
    for name, measure in todo:
        try:
            out.update(measure(rng))
        except Exception as err:  # a kernel this build lacks: that path stays at its default
            log.warning("tuning: measuring %s failed (%s: %s)", name, type(err).__name__, err)
    return out


def _override_active() -> bool:
    return os.environ.get("TF_OVERRIDE_GLOBAL_THREADPOOL") == "1"


# --------------------------------------------------------------------------- the entry points

_lock = threading.RLock()
_early_lock = threading.Lock()
_settings: Settings | None = None
_early: Settings | None = None
_logged = False


def _context() -> tuple[Cpu, str, str, Path]:
    cpu = detect_cpu()
    version = tensorflow_version()
    key = machine_key(cpu, version)
    return cpu, version, key, cache_path(key)


def early_settings() -> Settings:
    """The choices before TensorFlow loads: from the cache (or the safe defaults), nothing
    measured. What ``tfimport`` needs to set the environment."""
    global _early
    done = _settings
    if done is not None:
        return done
    with _early_lock:  # not _lock: a calibration in a worker must not block the GUI thread
        if _early is None:
            cpu, version, key, path = _context()
            timings = read_cache(path, key) or {}
            gpu = gpu_likely()
            _early = decide(
                cpu,
                timings,
                tf_version=version,
                # before TensorFlow loads, the override is still to be set from these choices
                override_active=_override_active() or "tensorflow" not in sys.modules,
                overrides=parse_overrides(os.environ.get("ADVGUI_TUNE")),
                source=f"cache {path}" if timings else "not measured",
                device="GPU: (expected: NVIDIA driver and CUDA wheels found)" if gpu else "CPU",
            )
        return _early


def settings() -> Settings:
    """The choices for this machine, measured once if the cache lacks them (needs TensorFlow;
    about 2 s). Thread-safe; logged once per process."""
    global _settings, _logged
    from advgui.core.tfimport import tf

    if not tf().executing_eagerly():  # asked while tracing: nothing can be timed here
        return early_settings()
    with _lock:
        if _settings is not None:
            return _settings
        cpu, version, key, path = _context()
        cached = read_cache(path, key) or {}
        device = device_name()
        t0 = time.perf_counter()
        # On a GPU the CPU paths are off whatever they measure: nothing to time.
        timings = cached if device.startswith("GPU") else calibrate(cpu, cached)
        spent = time.perf_counter() - t0
        if timings != cached:
            write_cache(path, key, cpu, version, timings)
            source = f"measured now ({spent:.2f} s), cached in {path}"
        else:
            source = f"cache {path}"
        _settings = decide(
            cpu,
            timings,
            tf_version=version,
            override_active=_override_active(),
            overrides=parse_overrides(os.environ.get("ADVGUI_TUNE")),
            source=source,
            device=device,
        )
        if not _logged:
            _logged = True
            for line in _settings.lines():
                log.info("tuning: %s", line)
        return _settings


def pool_override_env() -> str:
    """``TF_OVERRIDE_GLOBAL_THREADPOOL``'s value for this machine (set before TensorFlow loads)."""
    return "1" if early_settings().pool_override else "0"


def reset() -> None:
    """Forget this process's choices (the next call decides again; the cache stays)."""
    global _settings, _early, _logged, _device
    with _lock:
        _settings = _early = _device = None
        _logged = False


@contextlib.contextmanager
def overridden(**values: Any) -> Iterator[Settings]:
    """The current settings with ``values`` replaced, for the duration of the block (lets a
    benchmark or test run both sides of a choice in one process)."""
    global _settings
    with _lock:
        before = settings()
        changed = dataclasses.replace(before, **values)
        _settings = changed
    try:
        yield changed
    finally:
        with _lock:
            _settings = before


__all__ = [
    "Cpu",
    "Settings",
    "decide",
    "detect_cpu",
    "early_settings",
    "overridden",
    "parse_cpuinfo",
    "read_cache",
    "reset",
    "settings",
]
