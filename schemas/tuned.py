"""The tuned configuration ``streamsim tune`` writes and ``refresh``/``serve``/``evaluate`` read.

One JSON object::

    {"similarity": "bm25", "params": {"k1": 1.2, "b": 0.75}, "entries": "saturate:0.1",
     "serving": {"popularity_blend": 0.0, "recency_decay": 1.0, "allow_repeats": false},
     "provenance": {"data": ..., "split": ..., "metric": ..., "score": ..., "when": ...}}

The batch checks ``params`` against its registry; this module checks only the shape (and
``entries``, a ``schemas.entries`` spec; absent: raw scores, what files written before the
transform existed were tuned on), so that every reader fails the same way on a file that is
not a tuned configuration.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from schemas import entries as entry_transforms


class TunedConfigError(ValueError):
    """The file is missing, unreadable or not a tuned configuration (one line: the reason)."""


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
        params = data.get("params", {})
        if not isinstance(params, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in params.values()
        ):
            raise TunedConfigError(f'{source}: "params" must map names to numbers')
        serving = data.get("serving", {})
        if not isinstance(serving, dict):
            raise TunedConfigError(f'{source}: "serving" must be an object')
        known = {f.name for f in dataclasses.fields(QueryKnobs)}
        unknown = sorted(set(serving) - known)
        if unknown:
            raise TunedConfigError(f"{source}: unknown serving setting {unknown[0]!r}")
        provenance = data.get("provenance", {})
        try:
            knobs = QueryKnobs(**serving)
        except TunedConfigError as exc:
            raise TunedConfigError(f"{source}: {exc}") from None
        spec = data.get("entries", entry_transforms.RAW.spec)
        try:
            spec = entry_transforms.parse(spec).spec if isinstance(spec, str) else None
        except ValueError as exc:
            raise TunedConfigError(f'{source}: "entries": {exc}') from None
        if spec is None:
            raise TunedConfigError(f'{source}: "entries" must be a transform like "saturate:1"')
        return cls(
            data["similarity"], dict(params), knobs, provenance if isinstance(provenance, dict) else {}, entries=spec
        )


def read_tuned(path: str | Path) -> TunedConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TunedConfigError(f"{path}: no such file (write one with `streamsim tune`)") from None
    except IsADirectoryError:
        raise TunedConfigError(f"{path} is a directory, not a tuned configuration") from None
    except UnicodeDecodeError as exc:
        raise TunedConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise TunedConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return TunedConfig.from_json(text, str(path))
