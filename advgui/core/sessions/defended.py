"""The Defenses tab's defended-training page, without Qt: the settings it validates, the run it
starts (the model stored inside the job, before the GUI hears of it, a stopped one too), the
held-out checks it shows and the line that reports the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from advgui.core.data import MNIST, DatasetSpec
from advgui.core.errors import AdvguiError, ParameterError
from advgui.core.fit import EpochRecord
from advgui.core.progress import CancelToken, Progress, ProgressCallback
from advgui.core.store import ModelStore

#: What each recipe is, for the chooser's tooltips.
METHOD_TIPS = {
    "fast-at": "FGSM from a random start, step 1.25 eps (Wong 2020); best epoch kept by PGD check",
    "pgd-at": "PGD adversarial training (Madry 2018): strongest, slowest",
    "trades": "TRADES (Zhang 2019): clean loss + beta * KL to the adversarial prediction",
    "fgsm-at": "FGSM adversarial training (Goodfellow 2015): half clean, half FGSM",
    "distill": "defensive distillation (Papernot 2016): looks robust, is not",
    "noise": "Gaussian-noise training (Cohen 2019): a base classifier for randomized smoothing",
    "ibp": "interval bound propagation (Gowal 2019): trains a model IBP can verify at eps",
}


@dataclass(frozen=True)
class MethodForm:
    """What the form shows for a recipe: its default epochs, and which budget it takes."""

    epochs: int
    takes_eps: bool
    takes_sigma: bool


@dataclass(frozen=True)
class DefendedOutput:
    """What the job returns: the training's result and, if storing it failed, why."""

    result: Any  # advgui.core.defenses.DefenseResult
    store_error: str | None


@dataclass
class PendingDefended:
    """A validated defended training waiting for (or in) its job."""

    config: Any  # advgui.core.defenses.DefenseConfig
    data: Any
    store: ModelStore

    @property
    def message(self) -> str:
        cfg = self.config
        budget = f"sigma {cfg.sigma:g}" if cfg.method == "noise" else f"eps {cfg.eps:g}"
        return f"training {cfg.method} at {budget}..."

    def work(self, progress: ProgressCallback, cancel: CancelToken) -> DefendedOutput:
        """Train, and keep the model in the store the moment training ends (stopped too)."""
        from advgui.core.defenses import train_defended

        result = train_defended(self.config, self.data, progress=progress, cancel=cancel)
        try:
            self.store.add(result.classifier)
        except AdvguiError as err:
            return DefendedOutput(result, str(err))
        return DefendedOutput(result, None)


@dataclass
class DefendedTrainingSession:
    """The page's state: the dataset's default budget, the run's held-out checks."""

    store: ModelStore = field(default_factory=ModelStore)
    spec: DatasetSpec = MNIST
    #: The held-out checks of the run shown (one per epoch; a last one after Stop).
    history: list[EpochRecord] = field(default_factory=list)

    @staticmethod
    def form_for(method: str) -> MethodForm:
        from advgui.core.defenses.adversarial import DEFAULT_EPOCHS

        return MethodForm(DEFAULT_EPOCHS.get(method, 10), method != "noise", method == "noise")

    def method_after_switch(self, current: str, spec: DatasetSpec) -> str:
        """The recipe to offer on ``spec``: its :attr:`DatasetSpec.defense`, unless the user
        chose another (call before :meth:`eps_after_switch`, which moves to ``spec``)."""
        return current if current != self.spec.defense else spec.defense

    def eps_after_switch(self, current: float, spec: DatasetSpec) -> float:
        """The epsilon to show on ``spec``: its default, unless the user set their own."""
        keep = abs(current - self.spec.default_eps) >= 1e-9
        self.spec = spec
        return current if keep else spec.default_eps

    @staticmethod
    def config(method: str, **settings: Any) -> Any:
        """The recipe's validated :class:`~advgui.core.defenses.DefenseConfig` for the form's
        settings (arch, eps, epochs, n_train, sigma); ParameterError names the field."""
        from advgui.core.defenses import DefenseConfig

        return DefenseConfig.for_method(method, **settings).validate()

    def prepare(self, data: Any, method: str, **settings: Any) -> PendingDefended:
        """Validate everything before any thread starts (ParameterError names the field)."""
        if data is None:
            raise ParameterError("MNIST is not loaded yet (File > Import dataset...)")
        cfg = self.config(method, **settings)
        self.history = []
        return PendingDefended(cfg, data, self.store)

    def progress(self, update: Progress) -> str | None:
        """Keep an epoch's held-out check; the status line it brings (None: a batch)."""
        if isinstance(update.record, EpochRecord):
            self.history.append(update.record)
            return update.message
        return None

    @staticmethod
    def outcome(output: DefendedOutput) -> tuple[str, bool]:
        """(the status line, whether the run was stopped) for a finished job."""
        result, store_error = output.result, output.store_error
        clf = result.classifier
        kept = result.kept_record()
        figures = ""
        if kept:
            robust = kept.get("robust_accuracy")  # None: noise training is checked clean only
            pgd = f", PGD {robust:.1%}" if robust is not None else ""
            figures = (
                f": held-out clean {kept['clean_accuracy']:.1%}{pgd} "
                f"(epoch {result.best_epoch} kept)"
            )
        text = f"{clf.name}{figures}, test {result.test_accuracy:.1%}, {result.seconds:.0f} s"
        if result.cancelled:
            done = clf.meta.get("epochs_completed", 0.0)
            text = f"Stopped after {done:.2f} epochs; the model so far is kept. {text}"
            added = "added to the models, marked stopped"
        else:
            added = "added to the models"
        if store_error:
            return f"{text}; {added}; not kept in the model store: {store_error} (use Save as)", (
                result.cancelled
            )
        return f"{text}; {added} and kept in the model store", result.cancelled
