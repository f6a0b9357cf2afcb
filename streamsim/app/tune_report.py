"""The report ``streamsim tune`` writes beside its configuration, for the people who deploy it.

``OUT.md``: the validation protocol, the chosen configuration and why (or why the default
stayed), every candidate's score with its interval and its difference from the default, and
``OUT.png``: the top candidates' scores with their intervals.
"""

from __future__ import annotations

from pathlib import Path

from schemas.tuned import TunedConfig
from streamsim.app.tune import Outcome

#: Candidates drawn in the plot (the default and the choice are always in it).
PLOTTED = 12
COLUMNS = ("hr@10", "hr@20", "ndcg@10", "mrr@20", "coverage")


def span(triple: tuple[float, float, float], signed: bool = False) -> str:
    """``0.0447 [0.0421, 0.0472]``: a value and its interval."""
    f = "{:+.4f}" if signed else "{:.4f}"
    value, low, high = triple
    return f"{f.format(value)} [{f.format(low)}, {f.format(high)}]"


def table(outcome: Outcome) -> str:
    """Candidates by score: the metric with its interval, the difference from the default."""
    c = outcome.comparison
    head = [
        "candidate",
        f"{outcome.metric} [{c.confidence:.0%}]",
        "vs default [simultaneous]",
        *(m for m in COLUMNS if m != outcome.metric),
        "seconds",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for k in outcome.ranked():
        name = outcome.candidates[k].label
        if k == outcome.choice.chosen:
            name = f"**{name}** (chosen)"
        if k == c.reference and k != outcome.choice.chosen:
            name += " (default)"
        metrics = outcome.metrics[k]
        cells = [
            name,
            span(outcome.interval(k)),
            "" if k == c.reference else span(outcome.gain(k), signed=True),
            *(f"{metrics[m]:.4f}" for m in COLUMNS if m != outcome.metric),
            f"{metrics['seconds']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def coarse_warning(outcome: Outcome) -> str:
    c = outcome.comparison
    score, low, high = outcome.interval(c.reference)
    return (
        f"{c.pairs:,} validation pairs are too few to tell candidates apart: the default's {outcome.metric} is "
        f"{span((score, low, high))}, known only to ±{(high - low) / 2:.4f}, so a real gain smaller than that "
        "keeps the default; hold out more (--validation) or gather more data"
    )


def write(outcome: Outcome, config: TunedConfig, out: Path) -> list[str]:
    """``out`` with .md and .png suffixes beside the configuration; returns the files written."""
    plot = out.with_suffix(".png")
    _plot(outcome, plot)
    report = out.with_suffix(".md")
    report.write_text(_markdown(outcome, config, out.name, plot.name))
    return [str(report), str(plot)]


def _markdown(outcome: Outcome, config: TunedConfig, config_name: str, plot_name: str) -> str:
    p, c = config.provenance, outcome.comparison
    boot = p["choice"]["bootstrap"]
    chosen = outcome.chosen
    settings = ", ".join(f"{k} {v:g}" for k, v in chosen.params) or "no parameters"
    knobs = chosen.knobs
    lines = [
        f"# `streamsim tune`: {chosen.label}",
        "",
        f"Written with `{config_name}` on {p['when']} from `{p['data']}`.",
        "",
        "## Choice",
        "",
        f"- **Chosen:** `{chosen.similarity}` ({settings}); serving: popularity blend {knobs.popularity_blend:g}, "
        f"recency decay {knobs.recency_decay:g}, repeats {'allowed' if knobs.allow_repeats else 'excluded'}.",
        f"- **{outcome.metric} on validation:** {span(outcome.interval(outcome.choice.chosen))}"
        + (
            ""
            if outcome.choice.chosen == c.reference
            else f"; the default {outcome.default.label}: {span(outcome.interval(c.reference))}"
        )
        + ".",
        f"- **Why:** {outcome.choice.reason}.",
    ]
    if outcome.coarse:
        lines.append(f"- **Warning:** {coarse_warning(outcome)}.")
    lines += [
        "",
        "## Validation protocol",
        "",
        f"- Protocol: {p['protocol']}; split: {p['split']} (training data only, never the test set).",
        f"- {c.pairs:,} validation pairs scored by each of {len(outcome.candidates)} candidates "
        f"(top-{p['top_k']} neighbours, full ranking, the server's kernel).",
        f"- Intervals: {c.confidence:.0%}, from {boot['resamples']:,} paired bootstrap resamples of the pairs "
        f"(seed {boot['seed']}): {boot['intervals']}. Scores' intervals overlap where their paired "
        "differences do not: candidates agree on most pairs, so the difference is known better than either score."
        + (
            f" A difference from the default must be about ±{c.resolution:.4f} to be told from noise here."
            if c.resolution
            else ""
        ),
        "- Rule: the default stays unless the best candidate beats it beyond noise; otherwise the simplest "
        "candidate (fewest query knobs moved, then the measure earliest in the grid) that beats the "
        "default and is within noise of the best is chosen.",
        f"- Took {p['seconds']:g} s.",
        "",
        "## Candidates",
        "",
        table(outcome),
        "",
        f"![top candidates with their intervals]({plot_name})",
        "",
    ]
    return "\n".join(lines)


def _plot(outcome: Outcome, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    c = outcome.comparison
    shown = outcome.ranked()[:PLOTTED]
    for k in (outcome.choice.chosen, c.reference):
        if k not in shown:
            shown.append(k)
    labels = [outcome.candidates[k].label for k in shown]
    colours = [
        "tab:green" if k == outcome.choice.chosen else "tab:grey" if k == c.reference else "tab:blue" for k in shown
    ]
    fig, (left, right) = plt.subplots(1, 2, sharey=True, figsize=(10, 0.32 * len(shown) + 1.4))
    for row, k in enumerate(shown):
        left.errorbar(
            c.mean[k],
            row,
            xerr=[[c.mean[k] - c.low[k]], [c.high[k] - c.mean[k]]],
            fmt="o",
            color=colours[row],
            capsize=3,
        )
        right.errorbar(
            c.diff[k],
            row,
            xerr=[[c.diff[k] - c.diff_low[k]], [c.diff_high[k] - c.diff[k]]],
            fmt="o",
            color=colours[row],
            capsize=3,
        )
    left.axvline(c.mean[c.reference], color="tab:grey", linestyle="--", linewidth=1)
    right.axvline(0.0, color="tab:grey", linestyle="--", linewidth=1)
    left.set_yticks(range(len(shown)), labels, fontsize=8)
    left.invert_yaxis()
    left.set(xlabel=f"{outcome.metric} on {c.pairs:,} validation pairs ({c.confidence:.0%} interval)")
    right.set(xlabel=f"difference from the default, paired ({c.confidence:.0%} simultaneous)")
    fig.suptitle("Top candidates (green: chosen, grey: default)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
