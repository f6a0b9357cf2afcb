"""Telling candidates apart on one validation set: a paired bootstrap, and a choice that holds.

Every candidate is scored on the same validation pairs, so their differences are paired:
a pair both find (or both miss) says nothing about which is better. Resampling the pairs
with replacement (the same resample for every candidate) gives each candidate's score
interval and each difference's interval at once, with the correlation between candidates
kept.

Picking the best of thirty candidates turns luck into a winner if each is compared with
the default at 95% on its own. The intervals of the differences from the reference are
therefore simultaneous (a single-step max-t bootstrap): the quantile q of
max_c |Δ*_c − Δ_c| / se_c over the resamples covers every candidate's Δ at once with the
stated confidence, so "significantly better than the default" holds for the whole family.

The choice (:func:`choose`): if the best candidate is not significantly better than the
reference, the reference stays. Otherwise, among the candidates significantly better than
the reference whose difference from the best is within noise (the best's own bootstrap
interval of c − best reaches 0), the simplest wins: fewer moving parts are more likely to
hold on data the validation did not see.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Resamples of the validation pairs; percentiles at 2.5% / 97.5% rest on 25 resamples each.
RESAMPLES = 1000
CONFIDENCE = 0.95
#: Resamples drawn at once (a resample is a vector of pair counts as long as the pairs).
_CHUNK = 50


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Candidates' mean scores on the validation pairs with intervals (index = candidate)."""

    mean: np.ndarray
    #: Percentile interval of each candidate's score.
    low: np.ndarray
    high: np.ndarray
    reference: int
    #: mean − mean[reference], with its simultaneous interval.
    diff: np.ndarray
    diff_low: np.ndarray
    diff_high: np.ndarray
    #: Resampled means, resamples × candidates (for comparisons with another candidate).
    resampled: np.ndarray
    pairs: int
    confidence: float

    def within_noise_of(self, best: int) -> np.ndarray:
        """Candidates whose difference from ``best`` is not significantly negative."""
        tail = 100.0 * (1.0 + self.confidence) / 2.0
        upper = np.percentile(self.resampled - self.resampled[:, [best]], tail, axis=0)
        return (upper >= 0.0) | (np.arange(len(self.mean)) == best)

    @property
    def resolution(self) -> float:
        """The typical half-width of a difference's interval: smaller gains cannot be told from noise."""
        widths = (self.diff_high - self.diff_low)[np.arange(len(self.mean)) != self.reference] / 2.0
        widths = widths[widths > 0]
        return float(np.median(widths)) if len(widths) else 0.0


def compare(
    values: np.ndarray, reference: int, *, seed: int, resamples: int = RESAMPLES, confidence: float = CONFIDENCE
) -> Comparison:
    """``values``: pairs × candidates, each pair's score under each candidate (e.g. a hit, 0 or 1)."""
    values = np.asarray(values, dtype=np.float64)
    pairs, count = values.shape
    if pairs == 0:
        raise ValueError("no validation pairs to compare candidates on")
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        # Counts of each pair in `size` resamples of `pairs` draws with replacement.
        counts = rng.multinomial(pairs, np.full(pairs, 1.0 / pairs), size=size).astype(np.float64)
        chunks.append(counts @ values / pairs)
    resampled = np.vstack(chunks)
    mean = values.mean(axis=0)
    tails = 100.0 * (1.0 - confidence) / 2.0, 100.0 * (1.0 + confidence) / 2.0
    low, high = np.percentile(resampled, tails, axis=0)
    diff = mean - mean[reference]
    moved = resampled - resampled[:, [reference]] - diff
    se = moved.std(axis=0)
    varies = se > 0
    if varies.any():
        worst = np.max(np.abs(moved[:, varies]) / se[varies], axis=1)
        q = float(np.quantile(worst, confidence))
    else:
        q = 0.0
    return Comparison(mean, low, high, reference, diff, diff - q * se, diff + q * se, resampled, pairs, confidence)


@dataclasses.dataclass(frozen=True)
class Choice:
    chosen: int
    best: int
    #: Why (one sentence for people; the same in the report and the provenance).
    reason: str
    #: Candidates within noise of the best and significantly better than the reference.
    contenders: list[int]


def choose(comparison: Comparison, labels: list[str], complexity: list[tuple]) -> Choice:
    """The simplest candidate within noise of the best that beats the reference (else the reference).

    ``complexity``: a sortable key per candidate, smaller is simpler; ties of the best score
    go to the simpler candidate too."""
    c = comparison
    order = sorted(range(len(c.mean)), key=lambda k: (-c.mean[k], complexity[k]))
    best = order[0]
    ref = c.reference
    gain = f"{c.diff[best]:+.4f} [{c.diff_low[best]:+.4f}, {c.diff_high[best]:+.4f}]"
    if best == ref or c.diff_low[best] <= 0.0:
        if best == ref:
            why = f"the default {labels[ref]} scored best itself"
        else:
            why = (
                f"no candidate beats the default {labels[ref]} beyond noise: the best, {labels[best]}, "
                f"differs by {gain} (a simultaneous {c.confidence:.0%} interval over {c.pairs:,} pairs)"
            )
        return Choice(ref, best, why, [])
    near = c.within_noise_of(best)
    contenders = [k for k in order if near[k] and c.diff_low[k] > 0.0]
    chosen = min(contenders, key=lambda k: complexity[k])
    if chosen == best:
        why = f"{labels[best]} scored best and beats the default {labels[ref]} by {gain}"
        if len(contenders) > 1:
            why += f"; the {len(contenders) - 1} other candidates within noise of it are no simpler"
    else:
        why = (
            f"{labels[chosen]} is the simplest of {len(contenders)} candidates within noise of the best, "
            f"{labels[best]} ({c.mean[best]:.4f}), and beats the default {labels[ref]} by "
            f"{c.diff[chosen]:+.4f} [{c.diff_low[chosen]:+.4f}, {c.diff_high[chosen]:+.4f}]"
        )
    return Choice(chosen, best, why, contenders)
