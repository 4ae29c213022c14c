"""The Defense tab's session: the comparison it runs (validated before any thread starts), the
partial results that fill the curves and the table as each model finishes, the result shown
(with its notes: gradient masking, the squeezing detector), the history and the exports.

Defended training has a panel of its own (:mod:`advgui.qt.widgets.defense_train`) over
:func:`advgui.core.defenses.train_defended`; its models join the shared list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgui.core import history
from advgui.core.errors import AdvguiError
from advgui.core.fileio import atomic_write_bytes, read_capped
from advgui.core.progress import CancelToken, Partial, ProgressCallback
from advgui.core.results import MAX_RESULT_JSON, ResultEntry, ResultStore

NO_DATA = "MNIST is not loaded yet (File > Import dataset...)"


@dataclass(frozen=True)
class ComparisonOutput:
    """What the background work returns: the comparison and its history entry (or why not)."""

    result: dict[str, Any]
    entry: ResultEntry | None
    store_error: str | None


@dataclass
class PendingComparison:
    """A validated comparison waiting for (or in) its job."""

    models: list[Any]
    mnist: Any
    config: Any  # advgui.core.evaluation.EvalConfig
    transforms: list[Any]
    store: ResultStore

    @property
    def message(self) -> str:
        return f"comparing {len(self.models)} model(s) x {len(self.transforms)} input(s)..."

    def work(self, progress: ProgressCallback, cancel: CancelToken) -> ComparisonOutput:
        """Evaluate, and keep the result in the history the moment it finishes."""
        from advgui.core.evaluation import evaluate

        result = evaluate(self.models, self.mnist, self.config, transforms=self.transforms,
                          progress=progress, cancel=cancel)  # fmt: skip
        try:
            return ComparisonOutput(result, history.save_comparison(self.store, result), None)
        except AdvguiError as err:
            return ComparisonOutput(result, None, str(err))


class DefenseSession:
    """The Defense tab's state and decisions (see the module docstring)."""

    def __init__(self, store: ResultStore | None = None) -> None:
        #: Every finished comparison is kept here and listed again on the next start.
        self.store = store or ResultStore()
        self.mnist: Any = None
        self.pending: PendingComparison | None = None
        #: The last complete comparison (what the exports write); None before one.
        self.result: dict[str, Any] | None = None
        #: What the curves, table and notes show: ``result``, a run's partial result, or None.
        self.shown: dict[str, Any] | None = None
        self._partial: list[dict[str, Any]] = []
        self._meta: dict[str, Any] = {}

    # ------------------------------------------------------------------ running

    @staticmethod
    def chosen_models(models: Sequence[Any]) -> list[Any]:
        """The models to compare; AdvguiError when none is chosen."""
        if not models:
            raise AdvguiError("choose at least one model (train one or load a file)")
        return list(models)

    def prepare(
        self, models: Sequence[Any], config: Any, transforms: Sequence[Any]
    ) -> PendingComparison:
        """Keep the comparison as pending and clear the view; AdvguiError says why not."""
        if self.mnist is None:
            raise AdvguiError(NO_DATA)
        run = PendingComparison(self.chosen_models(models), self.mnist, config, list(transforms),
                                self.store)  # fmt: skip
        self.pending = run
        self._partial = []
        self._meta = {"eps": list(config.eps), "attacks": list(config.attacks), "n": config.n}
        self.shown = None
        return run

    def partial(self, partial: Partial) -> bool:
        """A model's results arrived early; True if :attr:`shown` changed (show it again)."""
        entry = partial.entry
        if entry is None:
            return False
        self._partial = [p for p in self._partial if p["label"] != entry["label"]]
        self._partial.append(entry)
        self.shown = {**self._meta, "results": list(self._partial)}
        return True

    def finish(self, output: ComparisonOutput) -> str:
        """The comparison came back: it is shown; the status line to print."""
        self.pending = None
        text = self.show(output.result)
        if output.store_error:
            text += f"; not kept in the history: {output.store_error}"
        return text

    def abandon(self, *, stopped: bool = False) -> list[str]:
        """Stopped or failed: what finished before stays shown, the last result is kept. A
        certification cut short is marked ``stopped`` (no figure, never a partial one); the
        labels of the models whose certification was."""
        self.pending = None
        cut = []
        for i, entry in enumerate(self._partial):
            cert = entry.get("certified")
            if isinstance(cert, dict) and cert.get("status") == "running":
                status = "stopped" if stopped else "failed"
                self._partial[i] = {**entry, "certified": {**cert, "status": status}}
                cut.append(str(entry["label"]))
        if cut and self.shown is not None and self.shown is not self.result:
            self.shown = {**self._meta, "results": list(self._partial)}
        return cut

    def stopped_text(self, cut: Sequence[str]) -> str:
        """The status line after Stop (``cut``: what :meth:`abandon` marked)."""
        if cut:
            return (
                f"stopped while certifying {', '.join(cut)}: the attack results are kept, "
                "certification is marked stopped"
            )
        return "stopped: the curves and table show what finished before Stop"

    def show(self, result: dict[str, Any]) -> str:
        """Show a complete comparison (fresh, reopened or read back); the status line."""
        self.shown = self.result = result
        return f"done in {result['seconds']:.0f} s on {result['n']} test images"

    def clear(self) -> None:
        """A comparison that could not be shown: nothing is, and nothing can be exported."""
        self.shown = self.result = None

    # ------------------------------------------------------------------ history and files

    def reopen(self, entry: ResultEntry) -> str:
        """Show a stored comparison again; the status line. AdvguiError while a comparison
        runs (nothing changes) or if it is damaged (nothing is shown)."""
        if self.pending is not None:
            raise AdvguiError("stop the running comparison first")
        try:
            result = history.load_comparison(entry)
        except AdvguiError as err:
            self.clear()
            raise AdvguiError(f"cannot reopen {entry.path.name}: {err}") from err
        self.show(_with_defaults(result))
        return f"reopened {entry.name} ({entry.created.replace('T', ' ')[:16]})"

    @staticmethod
    def read(path: str | Path) -> dict[str, Any]:
        """A comparison exported as JSON (bounded read); AdvguiError if it is not one."""
        try:
            result = json.loads(read_capped(path, MAX_RESULT_JSON))
            if not isinstance(result, dict) or not isinstance(result.get("results"), list):
                raise ValueError("not an advgui comparison")
        except (OSError, ValueError) as err:
            raise AdvguiError(f"{path}: cannot read comparison ({err})") from err
        return _with_defaults(result)

    def export(self, kind: str, path: str | Path, attack: str | None = None) -> None:
        """Write the comparison as ``csv``, ``json`` or ``png`` (the plot of ``attack``, the
        CLI's ``--plot`` figure at twice the size)."""
        from advgui.core import evaluation

        if self.result is None:
            raise AdvguiError("run a comparison first")
        if kind == "png":
            shown = self.shown if self.shown is not None else self.result
            atomic_write_bytes(path, evaluation.render_png(shown, attack, scale=2))
        else:
            {"csv": evaluation.save_csv, "json": evaluation.save_json}[kind](self.result, path)

    # ------------------------------------------------------------------ showing

    @staticmethod
    def notes(result: dict[str, Any] | None) -> str:
        """The notes beside the numbers: gradient masking, the squeezing detector's rates."""
        entries = (result or {}).get("results", [])
        notes = [n for e in entries for n in e.get("notes", [])]
        for e in entries:
            det = e.get("detector")
            if det:
                rates = "; ".join(
                    f"{a}: "
                    + ", ".join(
                        f"eps {eps:g} {r:.0%}"
                        for eps, r in zip(v["eps"], v["rate"], strict=True)
                        if r is not None
                    )
                    for a, v in det["detection_rate"].items()
                )
                notes.append(
                    f"{e['label']}: squeezing detector at {det['fpr_setting']:.0%} false "
                    f"positives (measured {det['fpr_measured']:.1%}); detection rates of "
                    f"successful adversarial images: {rates} (attacks not adapted to the detector)"
                )
        return "\n\n".join(notes)


def _with_defaults(result: dict[str, Any]) -> dict[str, Any]:
    result.setdefault("seconds", 0.0)
    result.setdefault("n", 0)
    return result
