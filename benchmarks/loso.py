"""Leave-one-speaker-out figures: a recipe judged on every speaker and several seeds, not one.

One speaker held out and one seed give a figure whose noise is as large as most recipe changes
(the dev set's held-out ``lucas`` moved 0.83-0.88 with the seed alone). So each variant runs
once per (held-out speaker, seed), and is summarized by the mean over all of them, the worst
speaker (its accuracy averaged over seeds) and, for both, the spread over seeds. A variant is
kept only when it raises the mean without lowering the worst by more than that spread.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_VARIANT = "default"


@dataclass(frozen=True)
class Variant:
    """A named set of Hydra overrides applied on top of the recipe under test."""

    name: str
    overrides: tuple[str, ...] = field(default_factory=tuple)


def parse_variant(text: str) -> Variant:
    """``NAME=OVERRIDE [OVERRIDE ...]``: overrides are separated by spaces, so values may hold
    commas (``mean_speed=model.config.time_pooling=mean train.augment.speed=[0.8,1.2]``)."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    overrides = tuple(rest.split())
    if not sep or not name or not overrides:
        raise ValueError(f"a variant is NAME=OVERRIDE [OVERRIDE ...], got {text!r}")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"variant name {name!r}: letters, digits, '_' and '-' only")
    malformed = [o for o in overrides if "=" not in o]
    if malformed:
        raise ValueError(f"variant {name!r}: {malformed} are not key=value overrides")
    return Variant(name, overrides)


def parse_variants(texts: Iterable[str], *, with_default: bool = True) -> list[Variant]:
    """The variants to run, the default recipe (no overrides) first; names must be unique."""
    variants = [Variant(DEFAULT_VARIANT)] if with_default else []
    variants += [parse_variant(text) for text in texts]
    names = [v.name for v in variants]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"variant names must be unique; repeated: {repeated}")
    if not variants:
        raise ValueError("no variant to run")
    return variants


def spread(values: Sequence[float]) -> dict[str, float]:
    """Sample standard deviation and range of ``values`` (0 for a single value)."""
    return {
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def summarize(runs: Sequence[dict[str, Any]], metric: str = "test_accuracy") -> dict[str, Any]:
    """One variant's runs (each with ``speaker``, ``seed`` and ``metric``) summarized.

    ``mean`` is over every (speaker, seed) run, its spread that of the per-seed means over the
    speakers; ``worst`` is the speaker whose mean over seeds is lowest, its spread over seeds.
    Every speaker must have run with the same seeds, or the per-seed means would not compare.
    """
    by_speaker: dict[str, dict[int, float]] = defaultdict(dict)
    for run in runs:
        by_speaker[run["speaker"]][int(run["seed"])] = float(run[metric])
    if not by_speaker:
        raise ValueError("no runs to summarize")
    seeds = sorted(next(iter(by_speaker.values())))
    uneven = {s: sorted(r) for s, r in by_speaker.items() if sorted(r) != seeds}
    if uneven:
        raise ValueError(f"speakers ran with different seeds: {uneven} vs {seeds}")
    speaker_means = {s: statistics.fmean(r.values()) for s, r in sorted(by_speaker.items())}
    seed_means = [statistics.fmean(r[seed] for r in by_speaker.values()) for seed in seeds]
    worst = min(speaker_means, key=lambda s: (speaker_means[s], s))
    return {
        "runs": len(runs),
        "seeds": seeds,
        "mean": round(statistics.fmean(seed_means), 4),
        "mean_spread": spread(seed_means),
        "worst_speaker": worst,
        "worst": round(speaker_means[worst], 4),
        "worst_spread": spread([by_speaker[worst][seed] for seed in seeds]),
        "per_speaker": {
            s: {"mean": round(m, 4), **spread(list(by_speaker[s].values()))}
            for s, m in speaker_means.items()
        },
    }


def verdict(candidate: dict[str, Any], baseline: dict[str, Any]) -> str:
    """``keep`` when the candidate raises the mean and its worst speaker is not lower than the
    baseline's by more than the larger of the two worst-speaker seed spreads; else ``drop``."""
    tolerance = max(candidate["worst_spread"]["std"], baseline["worst_spread"]["std"])
    raises_mean = candidate["mean"] > baseline["mean"]
    keeps_worst = candidate["worst"] >= baseline["worst"] - tolerance
    return "keep" if raises_mean and keeps_worst else "drop"


def markdown_table(summaries: dict[str, dict[str, Any]], variants: Sequence[Variant]) -> str:
    """The table README's Results keep: one row per variant, the default's row first."""
    overrides = {v.name: v.overrides for v in variants}
    baseline = summaries.get(DEFAULT_VARIANT)
    speakers = sorted({s for summary in summaries.values() for s in summary["per_speaker"]})
    header = [
        "variant",
        "overrides",
        "mean (std; min-max over seeds)",
        "worst speaker (std over seeds)",
        *speakers,
        "verdict",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, summary in summaries.items():
        mean, worst = summary["mean_spread"], summary["worst_spread"]
        keys = " ".join(f"`{o}`" for o in overrides.get(name, ())) or "(recipe as given)"
        if name == DEFAULT_VARIANT or baseline is None:
            judged = "baseline" if name == DEFAULT_VARIANT else ""
        else:
            judged = verdict(summary, baseline)
        cells = [
            name,
            keys,
            f"**{summary['mean']:.3f}** ({mean['std']:.3f}; {mean['min']:.3f}-{mean['max']:.3f})",
            f"{summary['worst_speaker']} {summary['worst']:.3f} ({worst['std']:.3f})",
            *(
                f"{summary['per_speaker'][s]['mean']:.3f}" if s in summary["per_speaker"] else ""
                for s in speakers
            ),
            judged,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
