"""Class-scale evaluation: many models ranked under one attack, the same for every model.

An instructor collects a class's defended models and wants them ranked under one strong attack
(AutoAttack by default). Every model gets the same first ``n`` test images, the same attack with
the same parameters and seed; the work is split into (model x image-chunk) tasks, each
self-contained (the model's bytes, the chunk's images, the settings), so the same task function
runs here, one after the other, or on a Ray cluster's workers (``cluster=ADDRESS``). Results are
merged per model in chunk order, so the leaderboard does not depend on where or in which order
the tasks ran.

Files from students are hostile: each is read once (bounded), loaded in Keras safe mode from
those bytes (:func:`advgui.core.models.load_model_bytes`), and the very bytes that passed are
what the workers load, again in safe mode. A file that cannot be used is listed under
``refused`` with the reason; it never ends the run.

With ``certify`` each task also certifies its chunk with ``advgui evaluate``'s certifier (IBP at
``eps``, or randomized smoothing at an L2 ``radius`` with a noise seed fixed by the run's seed
and the chunk's place), so a certified figure is the same wherever the tasks ran; a model that
cannot be certified keeps its row, with the reason.

Ray (``pip install 'advgui[cluster]'``) is imported only for a cluster run. Lost tasks (a
worker killed, a machine gone) are retried by Ray (``max_retries``); Stop cancels every task
(``ray.cancel``) and waits until each has ended.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import html
import io
import json
import logging
import math
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advgui import __version__
from advgui.core.errors import AdvguiError, ModelFileError, ParameterError
from advgui.core.fileio import atomic_write_text, json_default
from advgui.core.progress import Cancelled, CancelToken, Partial, Progress, ProgressCallback, check

log = logging.getLogger(__name__)

#: More files than this (a class is 30; a lab's archive a few hundred) is refused up front.
MAX_MODELS = 1000
#: Images per task: AutoAttack on 250 MNIST images is about a minute of one CPU core, long
#: enough that a task's fixed cost (loading the model, tracing the attack) stays small.
DEFAULT_CHUNK = 250
#: Ray retries a task whose worker died this many times before giving up on it.
MAX_RETRIES = 3
#: Models kept loaded per process (a worker usually gets several chunks of one model).
_LOADED_MAX = 4
RESULT_VERSION = 1
INSTALL_HINT = "pip install 'advgui[cluster]'"


class ClusterError(AdvguiError):
    """The Ray cluster cannot be used (not installed, unreachable, a task failed there)."""


# --------------------------------------------------------------------------- configuration


@dataclass
class LeaderboardConfig:
    """How every model is attacked; stored in the result so a run can be repeated."""

    attack: str = "autoattack"
    eps: float = 0.3
    n: int = 1000
    chunk: int = DEFAULT_CHUNK
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    #: Certification beside the attack, as ``advgui evaluate --certify`` does it: None,
    #: "ibp" (verified at ``eps``, L-inf) or "smoothing" (certified at the L2 ``radius`` with
    #: the same ``sigma`` for every model: a leaderboard compares like with like).
    certify: str | None = None
    sigma: float = 0.5
    n_samples: int = 100_000
    n0: int = 100
    alpha: float = 0.001
    radius: float = 0.5

    def validate(self) -> LeaderboardConfig:
        from advgui.core.evaluation import eval_attacks

        if self.attack not in eval_attacks():
            raise ParameterError(
                f"unknown attack {self.attack!r}; choose from {', '.join(eval_attacks())}",
                field="attack",
            )
        try:
            eps = float(self.eps)
        except (TypeError, ValueError):
            raise ParameterError(
                f"epsilon must be a number, got {self.eps!r}", field="eps"
            ) from None
        if not math.isfinite(eps) or not 0.0 < eps <= 1.0:
            raise ParameterError(f"epsilon must be above 0 and at most 1, got {eps:g}", field="eps")
        self.eps = eps
        for name, value, lo, hi in (
            ("n", self.n, 1, 10000),
            ("chunk", self.chunk, 1, 10000),
            ("seed", self.seed, 0, 2**31 - 1),
        ):
            if not isinstance(value, (int, np.integer)) or not lo <= int(value) <= hi:
                raise ParameterError(
                    f"{name} must be a whole number between {lo} and {hi}, got {value!r}",
                    field=name,
                )
        self.make_attack()  # every parameter checked by the attack's spec before any work
        if self.certify is not None:
            self._validate_certify()
        return self

    def _validate_certify(self) -> None:
        """Sigma and the sample counts under their own names (so a form can mark the field),
        then the rest as ``evaluate`` checks it."""
        from advgui.core.params import check_number

        self.sigma = check_number("sigma", self.sigma, lo=1e-3, hi=10.0)
        self.n_samples = check_number(
            "n_samples", self.n_samples, lo=1, hi=100_000_000, integer=True, label="n-samples"
        )
        self.n0 = check_number("n0", self.n0, lo=1, hi=10_000_000, integer=True)
        self.alpha = check_number("alpha", self.alpha, lo=1e-12, hi=0.5)
        self.radius = check_number("radius", self.radius, lo=0.0, hi=100.0)
        self.eval_config().validate()

    def eval_config(self, seed: int | None = None) -> Any:
        """This leaderboard as an :class:`~advgui.core.evaluation.EvalConfig` of one attack at
        one epsilon (and the certification, at ``radius`` for smoothing), so the attack and the
        certificate are made by the very code ``advgui evaluate`` runs."""
        from advgui.core.evaluation import EvalConfig

        cert: dict[str, Any] = {}
        if self.certify is not None:
            cert = {"certify": self.certify}
            if self.certify == "smoothing":
                cert.update(
                    sigma=self.sigma, n0=self.n0, n_samples=self.n_samples, alpha=self.alpha,
                    radii=(float(self.radius),),
                )  # fmt: skip
        return EvalConfig(
            attacks=(self.attack,),
            eps=(self.eps,),
            n=int(self.n),
            seed=int(self.seed if seed is None else seed),
            attack_params={self.attack: dict(self.params)},
            **cert,
        )

    def make_attack(self) -> Any:
        """The attack exactly as ``advgui evaluate`` runs it at this epsilon (L-inf)."""
        from advgui.core.evaluation import make_eval_attack

        return make_eval_attack(self.eval_config(), self.attack)

    def certify_text(self) -> str:
        """What the certified column holds, for a heading."""
        if self.certify == "ibp":
            return f"IBP-verified at eps {self.eps:g} (L-inf)"
        if self.certify == "smoothing":
            return (
                f"smoothing certified at L2 radius {self.radius:g} (sigma {self.sigma:g}, "
                f"n {self.n_samples}, alpha {self.alpha:g})"
            )
        return ""


#: The Leaderboard page's certify choice, as shown, and the method each stands for.
CERTIFY_CHOICES = {"none": None, "smoothing": "smoothing", "IBP": "ibp"}


def form_config(
    *, attack: str, eps: float, n: int, certify: str = "none", sigma: str = "", n_samples: str = ""
) -> LeaderboardConfig:
    """The Leaderboard page's fields (sigma and n-samples as typed) as a checked config; a bad
    value is a ParameterError whose ``field`` (``sigma``, ``n_samples``...) the page marks."""
    if certify not in CERTIFY_CHOICES:
        raise ParameterError(
            f"certify must be one of {', '.join(CERTIFY_CHOICES)}, got {certify!r}",
            field="certify",
        )
    method = CERTIFY_CHOICES[certify]
    extra: dict[str, Any] = {}
    if method == "smoothing":
        extra = {"sigma": sigma.strip(), "n_samples": n_samples.strip()}
    return LeaderboardConfig(attack=attack, eps=eps, n=n, certify=method, **extra).validate()


def certify_seed(seed: int, chunk: int) -> int:
    """Smoothing's noise seed for one chunk: fixed by the run's seed and the chunk's place, so
    a chunk draws the same noise wherever it runs, and no two chunks draw the same."""
    return int(np.random.SeedSequence([int(seed), int(chunk)]).generate_state(1)[0])


# --------------------------------------------------------------------------- model files


@dataclass
class ModelFile:
    """A model that passed the checks: the bytes every task loads, and what it is."""

    name: str
    file: str
    data: bytes = field(repr=False)
    sha256: str
    defense: str
    meta_name: str


def model_files(sources: Sequence[str | Path]) -> list[Path]:
    """Files given, and every file of each folder given (sorted, not recursing; hidden files
    skipped): a folder of submissions may hold anything, and what is not a usable model is
    refused with its reason rather than silently left out."""
    out: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            try:
                found = sorted(
                    q for q in p.iterdir() if not q.name.startswith(".") and not q.is_dir()
                )
            except OSError as err:
                raise ParameterError(
                    f"--models {p}: {err.strerror or err}", field="models"
                ) from err
            if not found:
                raise ParameterError(f"--models {p}: the folder has no files", field="models")
            out.extend(found)
        else:
            out.append(p)
        if len(out) > MAX_MODELS:
            raise ParameterError(
                f"--models: more than {MAX_MODELS} files; split the class into smaller runs",
                field="models",
            )
    if not out:
        raise ParameterError("choose at least one model", field="models")
    return list(dict.fromkeys(out))


def vet(path: Path, dataset: Any, probe: np.ndarray | None = None) -> ModelFile:
    """Read ``path`` once (bounded) and load those bytes safely; ModelFileError (or the
    dataset's refusal) otherwise."""
    from advgui.core import data as data_mod
    from advgui.core import models

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such model file") from None
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read: {err.strerror or err}") from err
    if size > models.MAX_MODEL_BYTES:
        raise ModelFileError(
            f"{path}: refused: {size / 2**20:,.0f} MB (at most {models.MAX_MODEL_BYTES >> 20} MB)"
        )
    try:
        with open(path, "rb") as fh:
            raw = fh.read(models.MAX_MODEL_BYTES + 1)
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read: {err.strerror or err}") from err
    clf = models.load_model_bytes(raw, str(path), probe)
    data_mod.check_dataset(clf, dataset)
    return ModelFile(
        name=path.stem,
        file=str(path),
        data=raw,
        sha256=hashlib.sha256(raw).hexdigest(),
        defense=str(clf.meta.get("defense", "none")),
        meta_name=str(clf.meta.get("name", path.stem)),
    )


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """One model on one chunk of the images (``start:stop``)."""

    index: int
    model: int
    chunk: int
    start: int
    stop: int


def plan(n_models: int, n: int, chunk: int) -> list[Task]:
    """Every (model x chunk) task, in the fixed order results are merged in."""
    tasks = []
    for m in range(n_models):
        for c, start in enumerate(range(0, n, chunk)):
            tasks.append(Task(len(tasks), m, c, start, min(n, start + chunk)))
    return tasks


_loaded: OrderedDict[str, Any] = OrderedDict()


def _classifier(data: bytes, sha256: str, name: str) -> Any:
    """The model of these bytes, loaded in safe mode once per process (a small LRU)."""
    from advgui.core import models

    clf = _loaded.get(sha256)
    if clf is None:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ModelFileError(f"{name}: the bytes received are not the file vetted")
        clf = models.load_model_bytes(data, name)
        _loaded[sha256] = clf
        while len(_loaded) > _LOADED_MAX:
            _loaded.popitem(last=False)
    else:
        _loaded.move_to_end(sha256)
    return clf


def run_task(
    data: bytes,
    sha256: str,
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    config: dict[str, Any],
    chunk: int = 0,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """One task, here or on a worker: which images the model gets right, clean, under the
    attack and (with ``certify``) certified, and the attack's details. A model that cannot be
    used is an ``error``, not an exception, so that the run goes on without it; one that
    cannot be certified keeps its figures and gets ``certify_error``."""
    from advgui.core.attacks.batch import run_batch
    from advgui.core.attacks.spec import MINIMUM_NORM
    from advgui.core.evaluation import _project

    t0 = time.perf_counter()
    where = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        cfg = LeaderboardConfig(**config)
        attack = cfg.make_attack()
        clf = _classifier(data, sha256, name)
        x = np.asarray(x, np.float32).reshape(-1, 28, 28, 1)
        y = np.asarray(y, np.int64)
        clean = clf.predict(x) == y
        half = _scaled(progress, 0.0, 0.5) if cfg.certify else progress
        if attack.kind == MINIMUM_NORM:
            goals = (y + 1) % 10 if not attack.supports_untargeted else None
            res = run_batch(
                attack, clf, x, y, goals=goals, batch_size=len(x), progress=half, cancel=cancel
            )
            x_adv = _project(x, res.x_adv, cfg.eps)
        else:
            res = run_batch(
                attack, clf, x, y, eps=cfg.eps, batch_size=len(x), progress=half, cancel=cancel
            )
            x_adv = res.x_adv
        robust = clean & (clf.predict(x_adv) == y)
    except Cancelled:
        raise
    except AdvguiError as err:
        return {"error": str(err), "seconds": time.perf_counter() - t0, **where}
    out = {"clean": clean, "robust": robust, "details": res.details}
    if cfg.certify:
        out.update(_certify_chunk(clf, x, y, cfg, chunk, _scaled(progress, 0.5, 1.0), cancel))
    return {**out, "seconds": time.perf_counter() - t0, **where}


def _certify_chunk(
    clf: Any,
    x: np.ndarray,
    y: np.ndarray,
    cfg: LeaderboardConfig,
    chunk: int,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> dict[str, Any]:
    """Per image, certified correct at the budget, by ``advgui evaluate``'s certifier; a
    model it cannot handle ("not verifiable: layer X") gets ``certify_error``."""
    from advgui.core import evaluation

    ecfg = cfg.eval_config(seed=certify_seed(cfg.seed, chunk))
    try:
        rec = evaluation.certify_entry(clf, x, y, ecfg, progress=progress, cancel=cancel)
    except Cancelled:
        raise
    except ParameterError as err:  # NotVerifiable is one
        return {"certify_error": str(err)}
    if rec["method"] == "ibp":
        certified = np.asarray(rec["verified"][0], bool)
        return {"certified": certified}
    certified = np.asarray(rec["correct"], bool) & (
        np.asarray(rec["radius"], np.float64) >= cfg.radius
    )
    return {"certified": certified, "abstained": int(sum(p < 0 for p in rec["prediction"]))}


def _scaled(progress: ProgressCallback | None, lo: float, hi: float) -> ProgressCallback | None:
    """Progress of one part of a task as a share ``lo..hi`` of the whole task."""
    if progress is None:
        return None

    def sub(update: Progress) -> None:
        progress(Progress(lo + (hi - lo) * update.fraction, 1.0, update.message))

    return sub


# --------------------------------------------------------------------------- executors


class _Local:
    """The tasks one after the other in this process."""

    name = "local"

    def run(
        self,
        tasks: list[Task],
        submit: Callable[[Task, ProgressCallback | None, CancelToken | None], dict[str, Any]],
        done: Callable[[Task, dict[str, Any]], None],
        progress: Callable[[float], None],
        cancel: CancelToken | None,
    ) -> None:
        for i, task in enumerate(tasks):
            check(cancel)

            def sub(update: Progress, i: int = i) -> None:
                progress(i + update.fraction)

            done(task, submit(task, sub, cancel))


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(
            f"a cluster run needs Ray, which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A quick TCP check of ``HOST:PORT`` so that a wrong address is one clear line at once
    (Ray's own connection attempt waits far longer before it gives up)."""
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--cluster {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {why} (is `ray start --head` running "
            "there, and the port open?)"
        ) from None


def check_cluster(address: str) -> None:
    """Before any work: Ray installed and, for ``HOST:PORT``, the address answering (one line
    otherwise)."""
    _ray()
    if address != "auto":
        _reachable(address)


class _Ray:
    """The tasks on a Ray cluster: one remote call per task, results taken as they come.

    A process already connected to Ray (``ray.init`` by its caller) keeps that connection and
    it is left open; otherwise this connects to ``address`` and disconnects at the end."""

    def __init__(self, address: str | None) -> None:
        self.ray = _ray()
        self.owned = False
        if not self.ray.is_initialized():
            if address and address != "auto":
                _reachable(address)
            try:
                self.ray.init(
                    address=address or "auto", logging_level=logging.WARNING, log_to_driver=False
                )
            except Exception as err:  # Ray raises ConnectionError, RuntimeError, ValueError...
                line = " ".join(str(err).split())[:200]
                raise ClusterError(
                    f"cannot connect to the Ray cluster at {address}: {line}"
                ) from None
            self.owned = True
        self.address = self.ray.get_runtime_context().gcs_address
        self.name = f"ray {self.address}"
        self.refs: list[Any] = []

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()

    def run(
        self,
        tasks: list[Task],
        args: Callable[[Task], tuple],
        done: Callable[[Task, dict[str, Any]], None],
        progress: Callable[[float], None],
        cancel: CancelToken | None,
    ) -> None:
        ray = self.ray
        remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(run_task)
        by_ref = {}
        for task in tasks:
            ref = remote.remote(*args(task))
            by_ref[ref] = task
        self.refs = list(by_ref)
        pending = list(by_ref)
        finished = 0
        progress(0.0)
        while pending:
            if cancel is not None and cancel.cancelled:
                self._cancel(pending)
                raise Cancelled()
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.2)
            for ref in ready:
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as err:  # retries spent, or the node gone
                    self._cancel(pending)
                    line = " ".join(str(err).split())[:300]
                    raise ClusterError(f"a task failed on the cluster: {line}") from None
                finished += 1
                done(by_ref[ref], result)
                progress(float(finished))

    def _cancel(self, pending: list[Any]) -> None:
        """Stop every task still queued or running, and wait until each has ended."""
        ray = self.ray
        for ref in pending:
            ray.cancel(ref, force=True)
        if pending:
            ray.wait(pending, num_returns=len(pending), timeout=60)


# --------------------------------------------------------------------------- the run


def run(
    files: Sequence[str | Path],
    dataset: Any,
    config: LeaderboardConfig | None = None,
    *,
    cluster: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Rank the models of ``files`` (paths; folders are expanded by :func:`model_files`) on
    ``dataset`` (a loaded :class:`~advgui.core.data.Dataset`); returns a JSON-able dict.

    ``cluster``: a Ray address (``HOST:PORT``, ``auto``); None runs here. Progress counts tasks
    (``info``: the model, its tasks done and in all; ``partial.entry``: the same, for a view).
    """
    from advgui.core import tuning

    cfg = (config or LeaderboardConfig()).validate()
    paths = model_files(files)
    t0 = time.perf_counter()
    n = min(int(cfg.n), len(dataset.x_test))
    x = np.asarray(dataset.x_test[:n], np.float32).reshape(-1, 28, 28, 1)
    y = np.asarray(dataset.y_test[:n], np.int64)
    executor: Any = _Local() if cluster is None else _Ray(cluster)
    try:
        kept: list[ModelFile] = []
        refused: list[dict[str, str]] = []
        for i, path in enumerate(paths):
            check(cancel)
            try:
                kept.append(vet(path, dataset, x[:32]))
            except AdvguiError as err:
                refused.append({"file": str(path), "reason": _reason(err, path)})
            if progress is not None:
                progress(Progress(i + 1, len(paths), f"checking {path.name}"))
        if not kept:
            first = refused[0]
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            raise ModelFileError(
                f"no usable model among {len(refused)} file(s): {Path(first['file']).name}: "
                f"{first['reason']}{more}"
            )
        tasks = plan(len(kept), n, int(cfg.chunk))
        settings = {k: v for k, v in asdict(cfg).items()}
        per_model = {m: len(range(0, n, int(cfg.chunk))) for m in range(len(kept))}
        results: dict[int, dict[str, Any]] = {}
        counts = dict.fromkeys(range(len(kept)), 0)
        total = max(1, len(tasks))

        def report(done: float, task: Task | None = None) -> None:
            if progress is None:
                return
            info: dict[str, Any] = {}
            partial = None
            message = f"{executor.name}: {int(done)}/{len(tasks)} tasks"
            if task is not None:
                mf = kept[task.model]
                info = {"model": mf.name, "model_done": counts[task.model],
                        "model_total": per_model[task.model]}  # fmt: skip
                partial = Partial(entry=dict(info))
                message = f"{mf.name}: chunk {task.chunk + 1} done"
            progress(Progress(done, total, message, info, partial))

        def done(task: Task, result: dict[str, Any]) -> None:
            results[task.index] = result
            counts[task.model] += 1
            report(float(len(results)), task)

        if isinstance(executor, _Local):

            def submit(task: Task, sub: Any, token: Any) -> dict[str, Any]:
                mf = kept[task.model]
                xs, ys = x[task.start : task.stop], y[task.start : task.stop]
                return run_task(mf.data, mf.sha256, mf.name, xs, ys, settings, task.chunk,
                                progress=sub, cancel=token)  # fmt: skip

            executor.run(tasks, submit, done, lambda d: report(d), cancel)
        else:
            ray = executor.ray
            # Each model's bytes go into the object store once; a chunk's images (a few
            # hundred KB) travel with its task.
            model_refs = [ray.put(mf.data) for mf in kept]

            def args(task: Task) -> tuple:
                mf = kept[task.model]
                xs, ys = x[task.start : task.stop], y[task.start : task.stop]
                return (model_refs[task.model], mf.sha256, mf.name, xs, ys, settings, task.chunk)

            executor.run(tasks, args, done, lambda d: report(d), cancel)
        ranking, worker_refused = _merge(kept, tasks, results, n, cfg)
        refused.extend(worker_refused)
        workers = sorted({(str(r.get("host")), int(r.get("pid", 0))) for r in results.values()})
        task_seconds = [float(r.get("seconds", 0.0)) for r in results.values()]
    finally:
        if isinstance(executor, _Ray):
            executor.close()
    return {
        "version": RESULT_VERSION,
        "kind": "leaderboard",
        "config": asdict(cfg),
        "attack": cfg.attack,
        "eps": cfg.eps,
        "n": n,
        "ranking": ranking,
        "refused": refused,
        "tasks": len(tasks),
        "executor": executor.name,
        "workers": len(workers),
        "task_seconds": sum(task_seconds),
        "seconds": time.perf_counter() - t0,
        "created": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "device": tuning.device_name(),
        "advgui": __version__,
    }


def _reason(err: Exception, path: Path) -> str:
    text = str(err)
    for prefix in (f"{path}: ", f"model {path.stem} "):
        text = text.removeprefix(prefix)
    return text


def _merge(
    kept: list[ModelFile],
    tasks: list[Task],
    results: dict[int, dict[str, Any]],
    n: int,
    cfg: LeaderboardConfig,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Per model, its chunks in order: correct images joined, details merged, certified
    figures checked against the robust ones; then ranked by robust accuracy, clean accuracy,
    name (a tie is broken the same way every time)."""
    from advgui.core.attacks.base import Details

    entries, refused = [], []
    for m, mf in enumerate(kept):
        mine = [results[t.index] for t in tasks if t.model == m]
        errors = [r["error"] for r in mine if "error" in r]
        if errors:
            refused.append({"file": mf.file, "reason": errors[0].removeprefix(f"{mf.file}: ")})
            continue
        clean = np.concatenate([r["clean"] for r in mine])
        robust = np.concatenate([r["robust"] for r in mine])
        parts = [r["details"] for r in mine]
        details = Details.merge(parts) if parts and all(p is not None for p in parts) else None
        cascade = [
            {k: v for k, v in rec.items() if k != "seconds"}  # timings differ run to run
            for rec in (getattr(details, "cascade", None) or [])
        ]
        flags = [
            {"name": str(f.get("name")), "message": str(f.get("message", ""))}
            for f in (getattr(details, "flags", None) or [])
        ]
        entry = {
            "model": mf.name,
            "file": mf.file,
            "sha256": mf.sha256,
            "defense": mf.defense,
            "clean_accuracy": float(clean.mean()),
            "robust_accuracy": float(robust.mean()),
            "robust": int(robust.sum()),
            "n": int(n),
            "cascade": cascade,
            "flags": flags,
            "seconds": float(sum(r["seconds"] for r in mine)),
        }
        if cfg.certify is not None:
            entry.update(_certified(mine, entry, cfg))
        entries.append(entry)
    entries.sort(key=lambda e: (-e["robust_accuracy"], -e["clean_accuracy"], e["model"], e["file"]))
    for rank, e in enumerate(entries, 1):
        e["rank"] = rank
    return [{"rank": e.pop("rank"), **e} for e in entries], refused


def _certified(
    mine: list[dict[str, Any]], entry: dict[str, Any], cfg: LeaderboardConfig
) -> dict[str, Any]:
    """A model's certified figure (its chunks joined), or the reason it has none, checked by
    ``advgui evaluate``'s own test: IBP-verified above the attack's robust accuracy at the
    same eps (or above clean) is a bug, flagged and kept so it can be looked at. Smoothing's
    figure is for the smoothed classifier and the L2 norm, so no L-inf attack on the base
    model bounds it; only evaluate's smoothing checks apply."""
    from advgui.core.evaluation import check_certified

    errors = [r["certify_error"] for r in mine if "certify_error" in r]
    if errors:
        return {"certified_accuracy": None, "certified": None, "certify_error": errors[0]}
    certified = np.concatenate([r["certified"] for r in mine])
    acc = float(certified.mean())
    if cfg.certify == "ibp":
        cert: dict[str, Any] = {"method": "ibp", "eps": [cfg.eps], "verified_accuracy": [acc]}
    else:
        cert = {"method": "smoothing", "radii": [cfg.radius], "certified_accuracy": [acc]}
    view = {
        "label": entry["model"],
        "clean_accuracy": entry["clean_accuracy"],
        "attacks": {cfg.attack: {"eps": [cfg.eps], "robust_accuracy": [entry["robust_accuracy"]]}},
        "certified": cert,
    }
    notes = check_certified(view)
    out: dict[str, Any] = {
        "certified_accuracy": acc,
        "certified": int(certified.sum()),
        "certified_consistent": bool(cert["consistent"]),
    }
    if cfg.certify == "smoothing":
        out["abstained"] = int(sum(r.get("abstained", 0) for r in mine))
    if notes:
        entry["flags"] = [
            *entry["flags"],
            *({"name": "certified-above-empirical", "message": note} for note in notes),
        ]
    return out


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """What two runs of the same models and seeds must agree on (timings and places left out)."""
    drop = {"seconds"}
    return {
        "ranking": [{k: v for k, v in e.items() if k not in drop} for e in result["ranking"]],
        "refused": result["refused"],
        "config": result["config"],
        "n": result["n"],
    }


# --------------------------------------------------------------------------- outputs

CSV_FIELDS = (
    "rank", "model", "file", "defense", "clean_accuracy", "robust_accuracy",
    "certified_accuracy", "robust", "n", "cascade", "flags", "sha256",
)  # fmt: skip


def certifying(result: dict[str, Any]) -> bool:
    """Whether the run certified (its outputs then show the certified column)."""
    return bool((result.get("config") or {}).get("certify"))


def certified_cell(entry: dict[str, Any]) -> str:
    """The certified figure of a row as text: a share, or why there is none."""
    if entry.get("certify_error"):
        return "-"
    acc = entry.get("certified_accuracy")
    if acc is None:
        return ""
    mark = "" if entry.get("certified_consistent", True) else "!"
    return f"{100 * acc:.1f}%{mark}"


def _certify_head(result: dict[str, Any]) -> str:
    cfg = result.get("config") or {}
    if not certifying(result):
        return ""
    known = {k: v for k, v in cfg.items() if k in LeaderboardConfig.__dataclass_fields__}
    return LeaderboardConfig(**known).certify_text()


def _cascade_text(entry: dict[str, Any]) -> str:
    from advgui.core.attacks.flags import cascade_text

    return cascade_text(entry.get("cascade") or [])


def table_lines(result: dict[str, Any]) -> list[str]:
    """The leaderboard for a terminal."""
    head = f"{result['attack']} at eps {result['eps']:g} (L-inf) on {result['n']} test images"
    cert = certifying(result)
    if cert:
        head += f"; certified: {_certify_head(result)}"
    column = f" {'certified':>9}" if cert else ""
    lines = [head, f"{'#':>3} {'model':28} {'clean':>7} {'robust':>7}{column}  cascade / flags"]
    for e in result["ranking"]:
        extra = _cascade_text(e)
        flags = ", ".join(f["name"] for f in e["flags"])
        if flags:
            extra = f"{extra}; flags: {flags}" if extra else f"flags: {flags}"
        if e.get("certify_error"):
            why = f"not certified: {e['certify_error']}"
            extra = f"{extra}; {why}" if extra else why
        cell = f" {certified_cell(e):>9}" if cert else ""
        lines.append(
            f"{e['rank']:>3} {e['model'][:28]:28} {100 * e['clean_accuracy']:6.1f}% "
            f"{100 * e['robust_accuracy']:6.1f}%{cell}  {extra}".rstrip()
        )
    for r in result["refused"]:
        lines.append(f"  refused {Path(r['file']).name}: {r['reason']}")
    lines.append(
        f"({result['tasks']} tasks on {result['executor']}, {result['workers']} worker(s), "
        f"{result['seconds']:.0f} s)"
    )
    return lines


def to_csv(result: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for e in result["ranking"]:
        flags = [f["name"] for f in e["flags"]]
        if e.get("certify_error"):
            flags.append(f"not certified: {e['certify_error']}")
        row = dict(e, cascade=_cascade_text(e), flags=", ".join(flags))
        writer.writerow({k: row.get(k, "") for k in CSV_FIELDS})
    for r in result["refused"]:
        writer.writerow({"model": Path(r["file"]).stem, "file": r["file"], "flags": "refused: "
                         + r["reason"]})  # fmt: skip
    return buf.getvalue()


def to_html(result: dict[str, Any]) -> str:
    """One standalone page (inline style, no scripts or external assets), every value
    escaped: model names come from students' file names."""
    esc = html.escape
    title = f"Leaderboard: {result['attack']} at eps {result['eps']:g}, {result['n']} test images"
    cert = certifying(result)
    rows = []
    for e in result["ranking"]:
        flags = "<br>".join(f"<b>{esc(f['name'])}</b>: {esc(f['message'])}" for f in e["flags"])
        cell = ""
        if cert:
            text = certified_cell(e)
            if e.get("certify_error"):
                text = f"not certified: {e['certify_error']}"
            cell = f"<td class=n>{esc(text)}</td>"
        rows.append(
            "<tr>"
            f"<td>{e['rank']}</td><td>{esc(e['model'])}</td><td>{esc(e['defense'])}</td>"
            f"<td class=n>{100 * e['clean_accuracy']:.1f}%</td>"
            f"<td class=n><b>{100 * e['robust_accuracy']:.1f}%</b></td>{cell}"
            f"<td>{esc(_cascade_text(e))}</td><td>{flags}</td>"
            f"<td><code>{esc(e['sha256'][:12])}</code></td></tr>"
        )
    refused = "".join(
        f"<li><b>{esc(Path(r['file']).name)}</b>: {esc(r['reason'])}</li>"
        for r in result["refused"]
    )
    refused_html = f"<h2>Refused</h2><ul>{refused}</ul>" if refused else ""
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
        "th{background:#eee}.n{text-align:right}"
    )
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(title)}</title><style>{style}</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        f"<p>{esc(result.get('dataset', 'mnist'))}; seed {result['config']['seed']}; "
        f"{result['tasks']} tasks on {esc(result['executor'])}; {esc(result['created'])}; "
        f"advgui {esc(result['advgui'])}; device {esc(result['device'])}</p>"
        + (f"<p>Certified: {esc(_certify_head(result))}</p>" if cert else "")
        + "<table><tr><th>#</th><th>model</th><th>defense</th><th>clean</th><th>robust</th>"
        + ("<th>certified</th>" if cert else "")
        + "<th>cascade (images broken)</th><th>flags</th><th>sha256</th></tr>"
        + "".join(rows)
        + f"</table>{refused_html}</body></html>\n"
    )


def save_json(result: dict[str, Any], path: Path | str) -> None:
    atomic_write_text(path, json.dumps(result, indent=1, default=json_default) + "\n")


def save_csv(result: dict[str, Any], path: Path | str) -> None:
    atomic_write_text(path, to_csv(result))


def save_html(result: dict[str, Any], path: Path | str) -> None:
    atomic_write_text(path, to_html(result))
