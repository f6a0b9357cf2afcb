"""The tuned configuration ``streamsim tune`` writes and ``refresh``/``serve``/``evaluate`` read.

One JSON object::

    {"similarity": "bm25", "params": {"k1": 1.2, "b": 0.75}, "entries": "saturate:0.1",
     "serving": {"popularity_blend": 0.0, "recency_decay": 1.0, "allow_repeats": false},
     "provenance": {"data": ..., "split": ..., "validation_pairs": ..., "metric": ..., "score": ...,
                    "choice": {"reason": ..., "score": [mean, low, high], "vs_default": [...], ...},
                    "when": ...}}

``provenance`` says where the choice came from (``streamsim tune``); readers do not act on it.

This module is the one validator every reader (``refresh``, ``serve``, ``evaluate``) goes
through, so they accept and refuse the same files: a bounded size (:data:`MAX_CONFIG_BYTES`,
read no further), no key it does not know (a misspelt ``parms`` would otherwise fall back to
defaults unnoticed), a known measure (:data:`MEASURE_PARAMS`, which the batch's registry
takes its parameters from) with parameters inside their ranges, an ``entries`` transform
(a ``schemas.entries`` spec; absent: raw scores, what files written before the transform existed
were tuned on), and query knobs in range.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path

from schemas import entries as entry_transforms


class TunedConfigError(ValueError):
    """The file is missing, unreadable or not a tuned configuration (one line: the reason)."""


#: A configuration ``tune`` writes is under 1 KB; a larger file is refused unread.
MAX_CONFIG_BYTES = 64 * 1024
#: The top-level keys of a configuration.
KEYS = ("similarity", "params", "entries", "serving", "provenance")


@dataclasses.dataclass(frozen=True)
class Param:
    """A measure parameter: its default and the closed range it must lie in."""

    default: float
    low: float
    high: float
    doc: str

    def check(self, name: str, value) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of hundreds of digits
            raise TunedConfigError(f"parameter {name}={_short(value)} is not a number in range") from None
        if not (math.isfinite(number) and self.low <= number <= self.high):
            raise TunedConfigError(
                f"parameter {name}={_short(value)} must be within [{self.low:g}, {self.high:g}] ({self.doc})"
            )
        return number


#: Each similarity measure's parameters (``batch.similarity.REGISTRY`` has one measure per name).
MEASURE_PARAMS: dict[str, dict[str, Param]] = {
    "cosine": {},
    "shrinkage": {"h": Param(10.0, 0.0, 1e6, "shrinkage term h >= 0")},
    "bm25": {
        "k1": Param(1.2, 0.0, 100.0, "term saturation k1 >= 0"),
        "b": Param(0.75, 0.0, 1.0, "length normalisation b in [0, 1]"),
    },
    "asymmetric": {"alpha": Param(0.5, 0.0, 1.0, "asymmetry α in [0, 1]")},
    "jaccard": {},
    "rp3beta": {
        "alpha": Param(1.0, 0.0, 4.0, "walk exponent α >= 0"),
        "beta": Param(0.3, 0.0, 2.0, "popularity penalty β >= 0"),
    },
    "rp3beta_weighted": {
        # The walk as measured (any α >= 0 keeps its entries within M = C^(α/2): batch.similarity).
        "alpha": Param(1.0, 0.0, 2.0, "walk exponent α in [0, 2]"),
        "beta": Param(0.3, 0.0, 2.0, "popularity penalty β >= 0"),
    },
    "directed": {
        "window": Param(5.0, 1.0, 100.0, "events after i that count, >= 1"),
        "reverse": Param(0.5, 0.0, 1.0, "weight of j before i, in [0, 1]"),
        "beta": Param(0.3, 0.0, 2.0, "popularity normalisation β >= 0"),
    },
}


def _short(value) -> str:
    """A value for an error line: its repr, cut (a 400-digit number, a long string)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def resolve_params(measure: str, given: Mapping[str, object] | None = None) -> dict[str, float]:
    """The measure's parameters: defaults overlaid with ``given``, each checked against its range."""
    if measure not in MEASURE_PARAMS:
        raise TunedConfigError(f"unknown similarity {_short(measure)} (choose from {', '.join(MEASURE_PARAMS)})")
    specs, given = MEASURE_PARAMS[measure], dict(given or {})
    unknown = sorted(set(given) - set(specs), key=str)
    if unknown:
        known = ", ".join(sorted(specs)) or "none"
        raise TunedConfigError(f"similarity {measure!r} has no parameter {_short(unknown[0])} (it takes: {known})")
    return {name: spec.check(name, given.get(name, spec.default)) for name, spec in specs.items()}


@dataclasses.dataclass(frozen=True)
class QueryKnobs:
    """What serving applies at query time."""

    #: w in (1-w)·score/max score + w·popularity/max popularity over the candidates.
    popularity_blend: float = 0.0
    #: The weight of the k-th most recent item of a session is decay^k (1: no decay).
    recency_decay: float = 1.0
    #: Whether items of the session itself may be recommended (session next-item calls).
    allow_repeats: bool = False

    def __post_init__(self):
        for name in ("popularity_blend", "recency_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                raise TunedConfigError(f"serving.{name} must be a number, not {value!r}")
            if not 0.0 <= value <= 1.0:
                raise TunedConfigError(f"serving.{name} must be within [0, 1], not {value!r}")
        if not isinstance(self.allow_repeats, bool):
            raise TunedConfigError(f"serving.allow_repeats must be true or false, not {self.allow_repeats!r}")


@dataclasses.dataclass(frozen=True)
class TunedConfig:
    similarity: str
    params: dict
    serving: QueryKnobs = QueryKnobs()
    provenance: dict = dataclasses.field(default_factory=dict)
    #: The entry transform's spec (``schemas.entries``).
    entries: str = entry_transforms.DEFAULT.spec

    def __post_init__(self):
        if not isinstance(self.params, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.params.values()
        ):
            raise TunedConfigError('"params" must map names to numbers')
        resolve_params(self.similarity, self.params)

    def to_json(self) -> str:
        return json.dumps(
            {
                "similarity": self.similarity,
                "params": self.params,
                "entries": self.entries,
                "serving": dataclasses.asdict(self.serving),
                "provenance": self.provenance,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> TunedConfig:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise TunedConfigError(f"{source} is not JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("similarity"), str):
            raise TunedConfigError(f'{source} is not a tuned configuration: no "similarity" name')
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise TunedConfigError(
                f"{source}: unknown key {_short(unknown[0])} (a tuned configuration has {', '.join(KEYS)})"
            )
        serving, provenance = data.get("serving", {}), data.get("provenance", {})
        for name, value in (("serving", serving), ("provenance", provenance)):
            if not isinstance(value, dict):
                raise TunedConfigError(f'{source}: "{name}" must be an object')
        known = {f.name for f in dataclasses.fields(QueryKnobs)}
        unknown = sorted(set(serving) - known)
        if unknown:
            raise TunedConfigError(f"{source}: unknown serving setting {_short(unknown[0])}")
        spec = data.get("entries", entry_transforms.RAW.spec)
        try:
            spec = entry_transforms.parse(spec).spec if isinstance(spec, str) else None
        except ValueError as exc:
            raise TunedConfigError(f'{source}: "entries": {exc}') from None
        if spec is None:
            raise TunedConfigError(f'{source}: "entries" must be a transform like "saturate:1"')
        try:
            knobs = QueryKnobs(**serving)
            params = data.get("params", {})
            params = dict(params) if isinstance(params, dict) else params
            return cls(data["similarity"], params, knobs, provenance, entries=spec)
        except TunedConfigError as exc:
            raise TunedConfigError(f"{source}: {exc}") from None


def read_tuned(path: str | Path) -> TunedConfig:
    """The configuration at ``path``, validated (module docstring); at most ``MAX_CONFIG_BYTES`` are read."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise TunedConfigError(
                f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a tuned configuration "
                "(streamsim tune writes under 1 KB)"
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise TunedConfigError(f"{path}: no such file (write one with `streamsim tune`)") from None
    except IsADirectoryError:
        raise TunedConfigError(f"{path} is a directory, not a tuned configuration") from None
    except UnicodeDecodeError as exc:
        raise TunedConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise TunedConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return TunedConfig.from_json(text, str(path))
