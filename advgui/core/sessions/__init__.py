"""What a tab holds and decides, without Qt: its chosen model and images, the run it started,
the result it shows and its history. A tab wires widgets to a session and shows it; tests
drive a session directly, with real data and no window.

One module per tab: :mod:`.attack` (:class:`AttackSession`), :mod:`.training`
(:class:`TrainingSession`), :mod:`.defense` (:class:`DefenseSession`) and the Defenses tab's
training page, :mod:`.defended` (:class:`DefendedTrainingSession`). Importing them pulls in
neither Qt nor TensorFlow.
"""

from advgui.core.sessions.attack import (
    AttackSession,
    Batch,
    PendingRun,
    ResultView,
    RunOutput,
    Shown,
    Source,
    SourceView,
    Work,
    attack_classes,
    done_message,
    results_folder,
)
from advgui.core.sessions.defended import (
    DefendedOutput,
    DefendedTrainingSession,
    MethodForm,
    PendingDefended,
)
from advgui.core.sessions.defense import ComparisonOutput, DefenseSession, PendingComparison
from advgui.core.sessions.training import (
    ModelView,
    PendingTraining,
    PredictionView,
    ProgressView,
    TrainedView,
    TrainingSession,
    TrainOutput,
)

__all__ = [
    "AttackSession",
    "Batch",
    "ComparisonOutput",
    "DefendedOutput",
    "DefendedTrainingSession",
    "DefenseSession",
    "MethodForm",
    "ModelView",
    "PendingComparison",
    "PendingDefended",
    "PendingRun",
    "PendingTraining",
    "PredictionView",
    "ProgressView",
    "ResultView",
    "RunOutput",
    "Shown",
    "Source",
    "SourceView",
    "TrainOutput",
    "TrainedView",
    "TrainingSession",
    "Work",
    "attack_classes",
    "done_message",
    "results_folder",
]
