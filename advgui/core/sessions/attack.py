"""The Attack tab's session: it prepares a run (validating everything first, so a refusal
names its field before any thread starts), hands out the work a background job runs, takes
the outcome back, and reopens stored runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from advgui.core import data, export, history, workspace
from advgui.core.attacks.base import Attack, AttackResult
from advgui.core.errors import AdvguiError, ParameterError
from advgui.core.precision import call_attack, describe
from advgui.core.precision import check as check_precision
from advgui.core.progress import CancelToken, Partial, ProgressCallback
from advgui.core.results import ResultEntry, ResultStore

Work = Callable[[ProgressCallback, CancelToken], Any]


def attack_classes() -> dict[str, type[Attack]]:
    from advgui.core.attacks import ATTACKS

    return ATTACKS


@dataclass(frozen=True)
class Source:
    """The image an attack starts from: a test image (with its index and label), a drawing or
    an imported picture (label -1, no index)."""

    x: np.ndarray  # (28, 28, 1) float32 in [0, 1]
    label: int = -1
    index: int | None = None

    @property
    def caption(self) -> str:
        return self.caption_in(data.MNIST)

    def caption_in(self, spec: data.DatasetSpec) -> str:
        """The caption with the label named as ``spec`` names its classes."""
        if self.index is None:
            return "your image"
        return f"test image {self.index}, label {spec.label(self.label)}"


class Batch(NamedTuple):
    """The images one run attacks: the source and, for a test image, the ones after it in the
    gallery's order."""

    x: np.ndarray  # (N, 28, 28, 1)
    labels: np.ndarray  # (N,), -1 where unknown
    indices: list[int] | None  # test-set indices, None for a drawing or import


@dataclass(frozen=True)
class RunOutput:
    """What the background work returns: the result, its history entry (or why not kept)."""

    result: AttackResult
    entry: ResultEntry | None
    store_error: str | None
    #: A mixed-precision run's float32 re-check (core/precision.py); None in float32.
    precision_check: dict[str, Any] | None = None


@dataclass
class Shown:
    """The result on screen: a fresh run or one reopened from the history."""

    result: AttackResult
    indices: list[int] | None
    model: Any  # the classifier it was made with; None when reopened without it
    inputs: np.ndarray  # the images given to the attack (the noise attack replaces them)


@dataclass
class PendingRun:
    """A validated run waiting for its job: what is attacked, with what, by whom."""

    attack: Attack
    model: Any
    batch: Batch
    goal: int | None
    store: ResultStore
    #: "float32" or "mixed" (core/precision.py): the result is judged in float32 either way.
    precision: str = "float32"

    @property
    def message(self) -> str:
        return f"Running {self.attack.name} on {len(self.batch.x)} image(s)..."

    @property
    def cost_axis(self) -> tuple[str, str] | None:
        """What this run's live cost curve plots (None: it draws none)."""
        return curve_axis(type(self.attack), self.attack.params, self.goal is not None)[0]

    @property
    def cost_x_label(self) -> str:
        """What the live curve's x axis counts: steps, or queries for a black-box attack."""
        return curve_axis(type(self.attack), self.attack.params, self.goal is not None)[1]

    def work(self, progress: ProgressCallback, cancel: CancelToken) -> RunOutput:
        """Run the attack and keep the result in the history the moment it finishes."""
        b, clf = self.batch, self.model
        labels = b.labels if (b.labels >= 0).all() else None
        res, check = call_attack(self.attack, clf, b.x, precision=self.precision, labels=labels,
                                 goals=self.goal, progress=progress, cancel=cancel)  # fmt: skip
        try:
            png = export.png_predictions(clf, res.x_adv)
            entry = history.save_attack(
                self.store, res, model=clf.name, indices=b.indices, inputs=b.x, png_pred=png
            )
        except AdvguiError as err:
            return RunOutput(res, None, str(err), check)
        return RunOutput(res, entry, None, check)


@dataclass(frozen=True)
class ResultView:
    """The texts and images that show input ``k`` of a result."""

    original: np.ndarray
    original_caption: str
    adversarial: np.ndarray
    adversarial_caption: str
    delta: np.ndarray
    delta_caption: str
    probs_before: np.ndarray
    probs_after: np.ndarray
    curve: np.ndarray | None
    summary: str
    #: What the curve is (title, y axis), None when the attack records no cost.
    curve_axis: tuple[str, str] | None = None
    #: The curve's x values (None: steps 1, 2, ...) and what they count.
    curve_x: np.ndarray | None = None
    curve_x_label: str = "step"


def curve_axis(cls: type[Attack], params: dict[str, Any], targeted: bool) -> tuple[
    tuple[str, str] | None, str
]:  # fmt: skip
    """((title, y axis) or None, x axis) of an attack's curve: a black-box attack's trace
    against its queries, else the cost per step."""
    trace = cls.trace_axis(params, targeted)
    if trace is not None:
        return (trace[0], trace[2]), trace[1]
    return cls.cost_axis(params, targeted), "step"


@dataclass(frozen=True)
class SourceView:
    """The chosen image before any attack: what the model makes of it (None without a model),
    shown as soon as an image and a model are chosen."""

    original: np.ndarray
    original_caption: str
    probs_before: np.ndarray | None
    summary: str


class AttackSession:
    """The Attack tab's state and decisions (see the module docstring)."""

    def __init__(self, store: ResultStore | None = None) -> None:
        self.store = store or ResultStore()
        self.mnist: Any = None
        #: The dataset the tab works on: how classes are named, which models may run.
        self.spec: data.DatasetSpec = data.MNIST
        self.model: Any = None
        self.source: Source | None = None
        self.pending: PendingRun | None = None
        self.shown: Shown | None = None
        #: The sidecar records of the last export (what was written and read back).
        self.last_export: list[dict[str, Any]] = []
        self._prediction: tuple[Any, Source, np.ndarray] | None = None

    # ------------------------------------------------------------------ dataset

    def use_dataset(self, spec: data.DatasetSpec, loaded: Any = None) -> None:
        """Work on ``spec`` (``loaded``: its data, None until loaded); a switch drops the image
        and the result shown, which belong to the other dataset."""
        if spec is not self.spec:
            self.source = self.shown = None
            self._prediction = None
        self.spec, self.mnist = spec, loaded

    def model_problem(self) -> str | None:
        """Why the chosen model must not run here (trained on the other dataset), or None."""
        return workspace.model_problem(self.model, self.spec)

    # ------------------------------------------------------------------ source

    def set_source(self, x: np.ndarray, label: int = -1, index: int | None = None) -> Source:
        """A new input; the shown result goes unless it was made from this very image (a
        drawing's or another image's old result must not sit beside it)."""
        self.source = Source(np.asarray(x, np.float32).reshape(28, 28, 1), int(label), index)
        shown = self.shown
        if shown is not None and not np.array_equal(shown.inputs[0], self.source.x):
            self.shown = None
        return self.source

    def prediction(self) -> np.ndarray | None:
        """The chosen model's class probabilities for the chosen image (cached), None until
        both are chosen."""
        if self.model is None or self.source is None:
            return None
        cached = self._prediction
        if cached is None or cached[0] is not self.model or cached[1] is not self.source:
            probs = np.asarray(self.model.predict_proba(self.source.x[None]))[0]
            self._prediction = cached = (self.model, self.source, probs)
        return cached[2]

    def source_view(self) -> SourceView | None:
        """How the chosen image looks before an attack (its "before" bars); None without one."""
        src = self.source
        if src is None:
            return None
        caption = src.caption_in(self.spec)
        problem = self.model_problem()
        if problem is not None:  # never a prediction from a model of the other dataset
            return SourceView(src.x, caption, None, problem)
        probs = self.prediction()
        if probs is None:
            return SourceView(src.x, caption, None, "Choose a model to see its prediction.")
        pred = self.spec.label(int(np.argmax(probs)))
        return SourceView(
            src.x,
            f"{caption}\npredicted {pred}",
            probs,
            f"{self.model.name} predicts {pred} at {100 * probs.max():.1f}%; run an attack.",
        )

    def choose_test_image(self, i: int) -> Source:
        if self.mnist is None:
            raise ParameterError(f"{self.spec.title} is not loaded yet", field="image")
        if not 0 <= i < len(self.mnist.y_test):
            raise ParameterError(f"no test image {i}", field="image")
        return self.set_source(self.mnist.x_test[i], int(self.mnist.y_test[i]), int(i))

    def batch(self, n: int = 1, order: Sequence[int] | np.ndarray | None = None) -> Batch:
        """The source and, for a test image, the ``n - 1`` images after it in ``order`` (the
        gallery as shown, filters applied; the test set when None)."""
        src = self.source
        if src is None:
            raise ParameterError("No image: pick a test image, draw or import one.", field="image")
        if src.index is None or n <= 1 or self.mnist is None:
            idx = None if src.index is None else [src.index]
            return Batch(src.x[None], np.array([src.label]), idx)
        shown = np.arange(len(self.mnist.y_test)) if order is None else np.asarray(order)
        pos = np.flatnonzero(shown == src.index)
        start = int(pos[0]) if len(pos) else 0
        chosen = [int(i) for i in shown[start : start + n]] or [src.index]
        return Batch(self.mnist.x_test[chosen], self.mnist.y_test[chosen], chosen)

    # ------------------------------------------------------------------ running

    @staticmethod
    def check(method: str, params: dict[str, Any], goal: int | None) -> Attack:
        """The attack ``method`` with ``params`` for ``goal``, or ParameterError naming the
        field (``goal`` for the target digit). Cheap: no TensorFlow, no model."""
        classes = attack_classes()
        if method not in classes:
            raise ParameterError(f"unknown attack {method!r}", field="method")
        cls = classes[method]
        if goal is None and not cls.supports_untargeted:
            raise ParameterError(f"{cls.name} needs a target digit", field="goal")
        if goal is not None and not cls.supports_targeted:
            raise ParameterError(f"{cls.name} cannot aim at a target digit", field="goal")
        return cls(**params)

    def prepare(
        self,
        method: str,
        params: dict[str, Any],
        goal: int | None,
        *,
        n: int = 1,
        order: Sequence[int] | np.ndarray | None = None,
        precision: str = "float32",
    ) -> PendingRun:
        """Validate everything and keep the run as pending; ParameterError says why not."""
        if self.model is None:
            raise ParameterError(
                "No model: train one in the Training tab or Load model...", field="model"
            )
        problem = self.model_problem()
        if problem is not None:
            raise ParameterError(problem, field="model")
        if self.source is None:
            raise ParameterError("No image: pick a test image, draw or import one.", field="image")
        attack = self.check(method, params, goal)
        precision = check_precision(precision)
        self.pending = PendingRun(
            attack, self.model, self.batch(n, order), goal, self.store, precision
        )
        return self.pending

    def finish(self, output: RunOutput) -> str:
        """Show the pending run's result; the status line to print."""
        run = self.pending
        assert run is not None, "finish() without a pending run"
        self.pending = None
        result = output.result
        self.shown = Shown(result, run.batch.indices, run.model, run.batch.x)
        return done_message(result, output.store_error) + describe(output.precision_check)

    def abandon(self) -> None:
        """The pending run was stopped or failed: nothing changes."""
        self.pending = None

    # ------------------------------------------------------------------ history

    def entries(self, warnings: list[str] | None = None) -> list[ResultEntry]:
        """Stored runs, newest first (damaged ones are left out, named in ``warnings``)."""
        return list(reversed(self.store.entries(history.ATTACK_KIND, warnings)))

    def reopen(self, entry: ResultEntry, models: Sequence[Any] = ()) -> str:
        """Show a stored run again; AdvguiError if it is damaged. The status line to print."""
        if self.pending is not None:
            raise AdvguiError("Stop the running attack first.")
        result, info = history.load_attack(entry)
        name = info.get("model")
        clf = next((m for m in models if m.name == name), None)
        self.shown = Shown(result, info.get("indices"), clf, info["inputs"])
        return f"Reopened {entry.name} ({entry.created.replace('T', ' ')[:16]})" + (
            "" if clf is not None else f"; load model {name} to export it"
        )

    # ------------------------------------------------------------------ showing

    def view(self, k: int) -> ResultView | None:
        """How input ``k`` of the shown result looks; None if there is no such input."""
        shown = self.shown
        if shown is None or not 0 <= k < len(shown.result):
            return None
        res = shown.result
        rec = res.record(k)
        spec = self.spec
        label = "?" if rec["source_label"] < 0 else spec.label(rec["source_label"])
        if not np.array_equal(res.x[k], shown.inputs[k]):
            where = "random start (noise)"  # the attack began from noise, not the image
        elif shown.indices:
            where = f"test image {shown.indices[k]}, label {label}"
        else:
            where = "your image"
        conf = rec["goal_confidence"]
        goal = "" if rec["goal"] is None else f" goal {spec.label(rec['goal'])}"
        before, after = spec.label(rec["pred_before"]), spec.label(rec["pred_after"])
        lam = res.details.lam
        lam_text = [f"lambda {lam[k]:.4g}"] if isinstance(lam, list) else []
        steps = f"{rec['steps']} step" + ("" if rec["steps"] == 1 else "s")
        figures = [
            f"{before} -> {after}{goal} at {100 * conf:.1f}%",
            f"L0 {rec['l0']}", f"L2 {rec['l2']:.3f}", f"Linf {rec['linf']:.3f}",
            steps, f"{rec['seconds']:.2f} s", *lam_text,
        ]  # fmt: skip
        queries = res.details.queries  # a black-box attack's cost is its queries
        if queries is not None and len(queries) > k:
            figures.insert(5, f"{int(queries[k])} queries")
        # Rich text: a number never wraps away from its unit ("3.56 / s"), only between
        # figures.
        summary = f"<b>{'Success' if rec['success'] else 'Failed'}</b>: " + ", ".join(
            [figures[0], *(f.replace(" ", "&nbsp;") for f in figures[1:])]
        )
        cls = attack_classes().get(res.method)
        axis, x_label = (None, "step") if cls is None else curve_axis(
            cls, dict(res.params), res.goals is not None
        )  # fmt: skip
        curve = curve_x = None
        if x_label != "step":  # a black-box attack's trace: the first image's only
            if k == 0 and res.details.trace:
                trace = np.asarray(res.details.trace, np.float64)
                curve, curve_x = trace[:, 1], trace[:, 0]
        elif res.cost_history is not None:
            curve = np.asarray(res.cost_history)[:, k]
        return ResultView(
            original=res.x[k],
            original_caption=f"{where}\npredicted {before}",
            adversarial=res.x_adv[k],
            adversarial_caption=f"predicted {after} ({100 * conf:.1f}%)",
            delta=res.x_adv[k] - res.x[k],
            delta_caption=f"L2 {rec['l2']:.2f}",
            probs_before=res.probs_before[k],
            probs_after=res.probs_after[k],
            curve=curve,
            summary=summary,
            curve_axis=axis if curve is not None else None,
            curve_x=curve_x,
            curve_x_label=x_label,
        )

    def live_delta(self, partial: Partial) -> tuple[np.ndarray, np.ndarray] | None:
        """(image, change from the source) of a live image, or None."""
        if partial.image is None or self.source is None:
            return None
        live = np.asarray(partial.image, np.float32).reshape(28, 28, 1)
        return live, live - self.source.x

    # ------------------------------------------------------------------ export

    def can_export(self) -> bool:
        return self.shown is not None and self.shown.model is not None

    def export_name(self, k: int) -> str:
        """File name an export dialog suggests for input ``k``."""
        assert self.shown is not None
        res, idx = self.shown.result, self.shown.indices
        name = res.method + (f"_idx{idx[k]}" if idx else "")
        goal = res.record(k)["goal"]
        return name + ("" if goal is None else f"_to{goal}") + ".png"

    def export_image_work(self, path: str | Path, k: int) -> Work:
        """Work writing input ``k`` as PNG + enlarged PNG + JSON, verified."""
        shown = self._exportable()
        index = shown.indices[k] if shown.indices else None
        res, clf, names = shown.result, shown.model, self.spec.class_names
        return lambda progress, cancel: [
            export.export_image(res, k, clf, path, index=index, class_names=names)
        ]

    def export_batch_work(self, folder: str | Path) -> Work:
        """Work writing every image of the shown result into ``folder`` with a CSV index."""
        shown = self._exportable()
        res, clf, idx, names = shown.result, shown.model, shown.indices, self.spec.class_names
        return lambda progress, cancel: export.export_batch(
            res, clf, folder, indices=idx, class_names=names
        )

    def exported(self, records: list[dict[str, Any]], where: str) -> str:
        self.last_export = records
        kept = sum(bool(r["png_success"]) for r in records)
        preds = ", ".join(self.spec.label(r["png_pred"]) for r in records[:10])
        return (
            f"Exported {len(records)} PNG(s) to {where}; read back and classified as "
            f"{preds}{'...' if len(records) > 10 else ''} ({kept} still adversarial)."
        )

    def _exportable(self) -> Shown:
        if self.shown is None:
            raise AdvguiError("nothing to export: run an attack first")
        if self.shown.model is None:
            raise AdvguiError("load the model this result was made with to export it")
        return self.shown


def results_folder() -> Path:
    """Where export dialogs open: the user's results folder (created), else home."""
    from advgui.core import paths

    folder = paths.results_dir(paths.active_dataset())
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return Path.home()
    return folder


def done_message(result: AttackResult, store_error: str | None = None) -> str:
    n = len(result)
    s = result.summary()
    text = (
        f"Done: {result.method} succeeded on {int(result.success.sum())}/{n} in "
        f"{result.seconds:.2f} s"
    )
    if n > 1 and np.isfinite(s["robust_accuracy"]):
        text += f"; accuracy {100 * s['clean_accuracy']:.0f}% -> {100 * s['robust_accuracy']:.0f}%"
    if store_error:
        text += f"; not kept in the history: {store_error}"
    return text
