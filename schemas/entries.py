"""The entry transform: what the user x item matrix holds in place of the raw score r_ui.

DIMSUM's error bound (Zadeh & Carlsson) needs entries in [0, 1] after scaling by M. Raw
summed weights are unbounded (one user viewing one item 700 times), so M taken from the
data is an outlier and nothing is sampled. A bounded transform f makes M its ceiling, a
property of f, not of what a pass reads:

=============  =========================  =========
spec           f(r)                       ceiling M
=============  =========================  =========
``raw``        r                          ∞ (nothing is sampled: the pass is exact)
``cap:c``      min(r, c)                  c
``saturate:k`` r / (r + k)  (as BM25's)   1
``log:c``      log(1 + min(r, c))         log(1 + c)
=============  =========================  =========

Each is monotone in r (a user's r_ui only grows, so f(r_ui) does too) and maps 0 to 0.

The stream and the batch must agree on f: the stream folds Σ_u f(r_ui)² per item for
:data:`FOLDED` (``items n:enorm2``, next to the raw ``n:norm2``), and a refresh with that
transform takes its column norms from there. The default was chosen by measurement
(``benchmarks/entry_transforms.py``, ``benchmarks/dimsum.md``): of the transforms tried it had
the best HR@10 on Tmall and sampled the most at shop scale. Saturating at k = 0.1 keeps the
order of the scores but puts every entry within [0.83, 1) of M (a browse 0.83, a purchase
0.98): a user's items weigh almost alike, and each entry is near the bound, so the sampler
keeps as few entries as the bound allows.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

#: kind -> (has a parameter, what it means).
KINDS = {
    "raw": None,
    "cap": "the cap c > 0 (e.g. one purchase's weight)",
    "saturate": "the half-saturation score k > 0",
    "log": "the cap c > 0 on r before log(1 + r)",
}


@dataclasses.dataclass(frozen=True)
class EntryTransform:
    kind: str = "raw"
    k: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown entry transform {self.kind!r} (choose from {', '.join(KINDS)})")
        if KINDS[self.kind] is None:
            if self.k is not None:
                raise ValueError(f"entry transform {self.kind!r} takes no parameter")
            return
        k = self.k
        if not (isinstance(k, (int, float)) and not isinstance(k, bool) and math.isfinite(k) and k > 0):
            raise ValueError(f"entry transform {self.kind!r} needs {KINDS[self.kind]}, not {k!r}")
        object.__setattr__(self, "k", float(k))

    @property
    def spec(self) -> str:
        """``kind`` or ``kind:k``, what :func:`parse` reads back."""
        return self.kind if self.k is None else f"{self.kind}:{self.k:g}"

    @property
    def ceiling(self) -> float:
        """The largest entry f can give: M of the sampler (∞ for raw scores)."""
        if self.kind == "raw":
            return math.inf
        if self.kind == "cap":
            return self.k
        if self.kind == "saturate":
            return 1.0
        return math.log1p(self.k)

    def apply(self, r):
        """f(r), elementwise on an array (or a float); f(0) = 0."""
        r = np.asarray(r, dtype=np.float64)
        if self.kind == "raw":
            return r
        if self.kind == "cap":
            return np.minimum(r, self.k)
        if self.kind == "saturate":
            return r / (r + self.k)
        return np.log1p(np.minimum(r, self.k))

    def square(self, r: float) -> float:
        """f(r)², one entry's share of the item's norm² (the stream folds its differences)."""
        x = float(self.apply(r))
        return x * x


def parse(spec: str | EntryTransform) -> EntryTransform:
    """``"saturate:1"`` -> EntryTransform("saturate", 1.0); ``"raw"`` -> raw scores."""
    if isinstance(spec, EntryTransform):
        return spec
    kind, sep, value = str(spec).strip().partition(":")
    if not sep:
        return EntryTransform(kind)
    try:
        k = float(value)
    except ValueError:
        raise ValueError(f"entry transform {spec!r}: {value!r} is not a number") from None
    return EntryTransform(kind, k)


RAW = EntryTransform()
#: The transform the stream folds norms for, and every pass's default.
FOLDED = EntryTransform("saturate", 0.1)
DEFAULT = FOLDED
