"""The hyperparameters of the preset algorithms: strings on the wire, typed values inside.

Cloud ML platforms take hyperparameters as strings (``batch_size: "32"``); so does Galley,
and this table says what each one means, its default, and how it is checked. The trainer reads
typed values through :func:`resolve`, so a name added here is known everywhere at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from galley.api import lr


def _number(text: str, kind: type[int] | type[float], expected: str) -> float:
    try:
        return kind(text.strip())
    except ValueError:
        raise ValueError(f"must be {expected}") from None


def _positive_int(text: str) -> int:
    value = int(_number(text, int, "a positive integer"))
    if not 1 <= value <= lr.MAX_EPOCHS * 100:
        raise ValueError(f"must be a positive integer no larger than {lr.MAX_EPOCHS * 100}")
    return value


def _epochs(text: str) -> int:
    value = int(_number(text, int, "a positive integer"))
    if not 1 <= value <= lr.MAX_EPOCHS:
        raise ValueError(f"must be an integer in 1..{lr.MAX_EPOCHS}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(_number(text, int, "zero or a positive integer"))
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def _fraction(text: str) -> float:
    value = _number(text, float, "a number in [0, 1)")
    if not 0 <= value < 1:
        raise ValueError("must be a number in [0, 1)")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text, float, "a number >= 0")
    if not 0 <= value < 1e6:
        raise ValueError("must be a number >= 0")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return parse


def _strategy(text: str) -> str:
    lr.parse_learning_rate_strategy(text, max_epochs=1)
    return text


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in {"true", "false"}:
        raise ValueError("must be 'true' or 'false'")
    return lowered == "true"


def _plain(value: float | None) -> str:
    """1000000 rather than 1e+06: bounds read as people type them."""
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class Allowed:
    """What a hyperparameter accepts, for people and programs alike: ``galley algorithms``, the console's
    Algorithms page and its create form read it. The parser stays the check; a test holds the two together
    at every bound and choice."""

    kind: Literal["integer", "number", "choice", "boolean", "learning_rate_strategy"]
    minimum: float | None = None
    maximum: float | None = None
    maximum_excluded: bool = False
    """True where the bound itself is refused: ``[0, 1)`` rather than ``[0, 1]``."""
    choices: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.kind == "choice":
            return f"one of {', '.join(self.choices)}"
        if self.kind == "boolean":
            return "true or false"
        if self.kind == "learning_rate_strategy":
            return (f"EPOCHS:RATE[,EPOCHS:RATE...] or a bare RATE; epochs rising, up to {_plain(self.maximum)}; "
                    f"rates in (0, {_plain(lr.MAX_RATE)}]")
        noun = "an integer" if self.kind == "integer" else "a number"
        if self.maximum is None:
            return f"{noun} >= {_plain(self.minimum)}"
        if self.kind == "integer":
            return f"{noun} in {_plain(self.minimum)}..{_plain(self.maximum)}"
        closing = ")" if self.maximum_excluded else "]"
        return f"{noun} in [{_plain(self.minimum)}, {_plain(self.maximum)}{closing}"

    def to_json(self) -> dict[str, Any]:
        """The description as data, with the sentence beside it; unset parts left out."""
        found: dict[str, Any] = {"kind": self.kind, "text": str(self)}
        if self.minimum is not None:
            found["minimum"] = int(self.minimum) if self.kind == "integer" else self.minimum
        if self.maximum is not None:
            found["maximum"] = int(self.maximum) if self.kind == "integer" else self.maximum
            found["maximumExcluded"] = self.maximum_excluded
        if self.choices:
            found["choices"] = list(self.choices)
        return found


_EPOCHS = Allowed("integer", 1, lr.MAX_EPOCHS)
_POSITIVE_INT = Allowed("integer", 1, lr.MAX_EPOCHS * 100)
_NON_NEGATIVE_INT = Allowed("integer", 0)
_FRACTION = Allowed("number", 0, 1, maximum_excluded=True)
_NON_NEGATIVE_FLOAT = Allowed("number", 0, 1e6, maximum_excluded=True)
_BOOLEAN = Allowed("boolean", choices=("true", "false"))
_STRATEGY = Allowed("learning_rate_strategy", minimum=1, maximum=lr.MAX_EPOCHS)


def _choices(*choices: str) -> Allowed:
    return Allowed("choice", choices=choices)


@dataclass(frozen=True)
class Hyperparameter:
    """One named hyperparameter of the preset algorithms."""

    name: str
    default: str
    parse: Callable[[str], Any]
    pattern: str
    description: str
    allowed: Allowed
    """What ``parse`` accepts, said in words and as data."""


_INT = r"^\s*[0-9]+\s*$"
_FLOAT = r"^\s*[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?\s*$"
_BOOL = r"^\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])\s*$"

HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter("learning_rate_strategy", "10:0.001", _strategy, lr.PATTERN,
                   "Epochs and learning rates: '20:0.001', '10:0.001,20:0.0001', or a bare rate with max_epochs.",
                   _STRATEGY),
    Hyperparameter("max_epochs", "10", _epochs, _INT,
                   "Epochs when learning_rate_strategy is a bare rate.", _EPOCHS),
    Hyperparameter("batch_size", "32", _positive_int, _INT, "Training images per step (per node).", _POSITIVE_INT),
    Hyperparameter("eval_batch_size", "64", _positive_int, _INT, "Evaluation images per step.", _POSITIVE_INT),
    Hyperparameter("image_size", "224", _positive_int, _INT, "Square input size in pixels.", _POSITIVE_INT),
    Hyperparameter("evaluate_every_n_epochs", "1", _positive_int, _INT, "Evaluate every N epochs (and at the end).",
                   _POSITIVE_INT),
    Hyperparameter("seed", "0", _non_negative_int, _INT, "Seed for the split, shuffling and initialisation.",
                   _NON_NEGATIVE_INT),
    Hyperparameter("num_workers", "0", _non_negative_int, _INT, "Data-loading worker processes; 0 loads in-process.",
                   _NON_NEGATIVE_INT),
    Hyperparameter("optimizer", "adam", _choice("adam", "adamw", "sgd"), r"^(adam|adamw|sgd)$", "adam, adamw or sgd.",
                   _choices("adam", "adamw", "sgd")),
    Hyperparameter("momentum", "0.9", _fraction, _FLOAT, "SGD momentum.", _FRACTION),
    Hyperparameter("weight_decay", "0.0001", _non_negative_float, _FLOAT, "L2 weight decay.", _NON_NEGATIVE_FLOAT),
    Hyperparameter("label_smoothing", "0.1", _fraction, _FLOAT, "Label smoothing for the cross-entropy loss.",
                   _FRACTION),
    Hyperparameter("warmup_epochs", "1", _non_negative_int, _INT,
                   "Epochs that train only the new head (backbone frozen) before fine-tuning all layers.",
                   _NON_NEGATIVE_INT),
    Hyperparameter("backbone_lr_multiplier", "0.1", _non_negative_float, _FLOAT,
                   "When fine-tuning, pretrained layers learn at this multiple of the rate; the new head at the rate.",
                   _NON_NEGATIVE_FLOAT),
    Hyperparameter("augment", "true", _boolean, _BOOL, "Random crops and flips on training images.", _BOOLEAN),
    Hyperparameter("cache_images", "auto", _choice("auto", "true", "false"), r"^(auto|true|false)$",
                   "Keep decoded, resized images in memory: auto does so when they fit.",
                   _choices("auto", "true", "false")),
    Hyperparameter("max_bad_fraction", "0.1", _fraction, _FLOAT,
                   "Fail the job when more than this share of images cannot be read.", _FRACTION),
    Hyperparameter("near_duplicates", "group", _choice("group", "ignore"), r"^(group|ignore)$",
                   "group: find near-duplicate photos (same object or scene) with the pretrained backbone and "
                   "keep each group on one side of the train/eval split; ignore: split photo by photo.",
                   _choices("group", "ignore")),
    Hyperparameter("near_duplicate_threshold", "0.175", _fraction, _FLOAT,
                   "Similarity (whitened cosine, average linkage) from which photos count as near-duplicates; "
                   "higher finds fewer, tighter groups.", _FRACTION),
    Hyperparameter("selection", "best", _choice("best", "last"), r"^(best|last)$",
                   "Which epoch's weights to package: best (highest evaluation accuracy, ties to the later "
                   "epoch) or last.", _choices("best", "last")),
)

BY_NAME: dict[str, Hyperparameter] = {h.name: h for h in HYPERPARAMETERS}


def known_names() -> list[str]:
    return [h.name for h in HYPERPARAMETERS]


def parse_one(name: str, text: object) -> Any:
    """The typed value of one hyperparameter; ``ValueError`` says what was expected."""
    h = BY_NAME[name]
    if not isinstance(text, str):
        raise ValueError(f"must be a string such as {h.default!r}, got {text!r}")
    if name == "learning_rate_strategy":
        return h.parse(text)
    try:
        return h.parse(text)
    except ValueError as error:
        raise ValueError(f"{text!r} {error}") from None


@dataclass(frozen=True)
class Resolved:
    """Every hyperparameter as its typed value, defaults filled in: what the training loop reads."""

    learning_rate_strategy: lr.LearningRateStrategy
    max_epochs: int
    batch_size: int
    eval_batch_size: int
    image_size: int
    evaluate_every_n_epochs: int
    seed: int
    num_workers: int
    optimizer: str
    momentum: float
    weight_decay: float
    label_smoothing: float
    warmup_epochs: int
    backbone_lr_multiplier: float
    augment: bool
    cache_images: str
    max_bad_fraction: float
    near_duplicates: str
    near_duplicate_threshold: float
    selection: str


def resolve(values: Mapping[str, str]) -> Resolved:
    """Typed values for every known hyperparameter, defaults filled in."""
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown hyperparameter {unknown[0]!r}; known: {', '.join(known_names())}")
    typed = {h.name: parse_one(h.name, values.get(h.name, h.default)) for h in HYPERPARAMETERS}
    typed["learning_rate_strategy"] = lr.parse_learning_rate_strategy(
        typed["learning_rate_strategy"], max_epochs=typed["max_epochs"]
    )
    return Resolved(**typed)
