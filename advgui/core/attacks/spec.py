"""What an attack takes, declared once: validation, the GUI form, the CLI flags, the compare
view's defaults, the evaluation's parameters and the JSON record all read it from here.

After ART's ``attack_params`` and Foolbox 3's two kinds of attack: a *fixed-budget* attack
gets an epsilon and does the most damage inside it (FGSM, PGD); a *minimum-norm* attack looks
for the smallest change that succeeds (C&W, DeepFool) and is judged at an epsilon by
projecting its result. No TensorFlow here: listing attacks and building forms stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from advgui.core.errors import ParameterError
from advgui.core.params import check_number

#: A perturbation budget ``eps`` is given; the attack maximises the damage within it.
FIXED_BUDGET = "fixed-budget"
#: The attack searches for the smallest perturbation that succeeds.
MINIMUM_NORM = "minimum-norm"
KINDS = (FIXED_BUDGET, MINIMUM_NORM)

# What an attack may see of the model (separate from the kind: Square is fixed-budget and
# score-based, HopSkipJump minimum-norm and decision-based). A black-box attack that beats the
# white-box ones is the classic sign of gradient masking (Carlini et al. 2019).
#: Gradients of the logits.
WHITE_BOX = "white-box"
#: Only the model's outputs (logits or scores), never a gradient.
SCORE_BASED = "score-based"
#: Only the predicted label.
DECISION_BASED = "decision-based"
ACCESS = (WHITE_BOX, SCORE_BASED, DECISION_BASED)


@dataclass(frozen=True)
class Param:
    """One parameter of an attack.

    The type follows the default (bool, int, float, text with ``choices``). ``words`` are
    text values a number may be replaced by (``"auto"`` for lambda); ``optional`` allows None
    ("the attack chooses", e.g. a step size derived from epsilon).
    """

    name: str
    default: Any
    lo: float = -math.inf
    hi: float = math.inf
    integer: bool = False
    choices: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    optional: bool = False
    label: str = ""
    help: str = ""
    advanced: bool = False

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    @property
    def type(self) -> str:
        """ "bool", "choice", "int" or "float": what kind of field shows it."""
        if self.choices:
            return "choice"
        if isinstance(self.default, bool):
            return "bool"
        if self.integer:
            return "int"
        return "float"

    def check(self, value: Any) -> Any:
        """The value as the attack uses it; ParameterError naming the field otherwise."""
        if value is None:
            if self.optional:
                return None
            raise ParameterError(f"{self.name} needs a value", field=self.name)
        if self.choices:
            text = str(value).strip().lower()
            if text not in self.choices:
                raise ParameterError(
                    f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}",
                    field=self.name,
                )
            return text
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)  # from --param NAME=0/1
            raise ParameterError(f"{self.name} must be on or off, got {value!r}", field=self.name)
        if isinstance(value, str) and value.strip().lower() in self.words:
            return value.strip().lower()
        return check_number(self.name, value, lo=self.lo, hi=self.hi, integer=self.integer)

    def describe(self) -> str:
        """Range or choices, for help texts and tooltips."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.type == "bool":
            return "on or off"
        parts = []
        if math.isfinite(self.lo) or math.isfinite(self.hi):
            parts.append(f"{self.lo:g} to {self.hi:g}")
        if self.words:
            parts.append(" or ".join(repr(w) for w in self.words))
        return ", ".join(parts)


def check_all(owner: str, spec: Iterable[Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared parameter, given or default, checked; unknown names are refused."""
    spec = tuple(spec)
    names = {p.name for p in spec}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ParameterError(
            f"{owner} does not take {', '.join(unknown)}; it takes {', '.join(sorted(names))}",
            field=unknown[0],
        )
    return {p.name: p.check(given.get(p.name, p.default)) for p in spec}


def by_name(spec: Iterable[Param]) -> dict[str, Param]:
    return {p.name: p for p in spec}


# Parameters several attacks share, one name and one meaning each.
def eps(default: float = 0.3, hi: float = 1.0) -> Param:
    return Param("eps", default, lo=0.0, hi=hi, label="Epsilon",
                 help="perturbation budget (L-inf: per pixel; L2: whole image)")  # fmt: skip


def steps(default: int, hi: int = 100_000) -> Param:
    return Param("steps", default, lo=1, hi=hi, integer=True, label="Steps",
                 help="iterations of the attack")  # fmt: skip


def step_size(default: float | None, hi: float = 1000.0, help: str = "size of one step") -> Param:
    return Param("step_size", default, lo=1e-6, hi=hi, optional=default is None,
                 label="Step size", help=help)  # fmt: skip


def seed(default: int = 0) -> Param:
    return Param("seed", default, lo=0, hi=2**31 - 1, integer=True, label="Seed",
                 help="random start and noise are reproducible by seed", advanced=True)  # fmt: skip


def restarts(default: int = 1) -> Param:
    return Param("restarts", default, lo=1, hi=1000, integer=True, label="Restarts",
                 help="random restarts; the strongest example per image is kept")  # fmt: skip


def norm(default: str = "linf", choices: tuple[str, ...] = ("linf", "l2")) -> Param:
    return Param("norm", default, choices=choices, label="Norm",
                 help="the perturbation's norm (linf: per pixel; l2: whole image)")  # fmt: skip


def eot(default: int = 1) -> Param:
    return Param("eot", default, lo=1, hi=1000, integer=True, label="EOT samples",
                 advanced=True, help="gradients averaged over this many model calls")  # fmt: skip


def targets(default: int = 9) -> Param:
    return Param("targets", default, lo=1, hi=9, integer=True, label="Target classes",
                 help="the most likely other classes, each the target in turn")  # fmt: skip


def queries(default: int) -> Param:
    return Param("queries", default, lo=1, hi=1_000_000, integer=True, label="Queries",
                 help="model evaluations per image (per restart)")  # fmt: skip
