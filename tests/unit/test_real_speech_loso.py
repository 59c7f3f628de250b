"""The LOSO mode of benchmarks/real_speech.py: its summary and variant parsing, without training."""

from __future__ import annotations

import json

import pytest

from benchmarks import real_speech
from benchmarks.loso import (
    DEFAULT_VARIANT,
    Variant,
    markdown_table,
    parse_variant,
    parse_variants,
    summarize,
    verdict,
)

# (speaker, seed) -> test accuracy of one made-up variant
ACCURACY = {
    ("jackson", 1): 0.90,
    ("jackson", 2): 0.94,
    ("jackson", 3): 0.92,
    ("lucas", 1): 0.80,
    ("lucas", 2): 0.84,
    ("lucas", 3): 0.88,
    ("theo", 1): 0.95,
    ("theo", 2): 0.93,
    ("theo", 3): 0.94,
}


def runs(accuracy: dict[tuple[str, int], float]) -> list[dict]:
    return [{"speaker": s, "seed": n, "test_accuracy": a} for (s, n), a in accuracy.items()]


def test_summary_mean_worst_and_seed_spread():
    summary = summarize(runs(ACCURACY))
    assert summary["runs"] == 9
    assert summary["seeds"] == [1, 2, 3]
    assert summary["mean"] == pytest.approx(sum(ACCURACY.values()) / 9, abs=1e-4)
    # the per-seed means over speakers: 0.8833, 0.9033, 0.9133
    assert summary["mean_spread"]["min"] == pytest.approx(0.8833, abs=1e-4)
    assert summary["mean_spread"]["max"] == pytest.approx(0.9133, abs=1e-4)
    assert summary["mean_spread"]["std"] == pytest.approx(0.01528, abs=1e-4)
    assert summary["worst_speaker"] == "lucas"
    assert summary["worst"] == pytest.approx(0.84)
    assert summary["worst_spread"] == {"std": pytest.approx(0.04), "min": 0.8, "max": 0.88}
    assert summary["per_speaker"]["theo"]["mean"] == pytest.approx(0.94)


def test_summary_with_one_seed_has_no_spread():
    summary = summarize(runs({("a", 7): 0.5, ("b", 7): 0.7}))
    assert summary["mean"] == pytest.approx(0.6)
    assert summary["worst_speaker"] == "a"
    assert summary["mean_spread"]["std"] == summary["worst_spread"]["std"] == 0.0


def test_summary_refuses_speakers_with_different_seeds():
    uneven = runs({("a", 1): 0.5, ("a", 2): 0.6, ("b", 1): 0.7})
    with pytest.raises(ValueError, match="different seeds"):
        summarize(uneven)


def test_verdict_keeps_a_higher_mean_unless_the_worst_drops_beyond_the_seed_spread():
    baseline = summarize(runs(ACCURACY))  # worst lucas 0.84, std 0.04
    better = {key: a + 0.01 for key, a in ACCURACY.items()}
    assert verdict(summarize(runs(better)), baseline) == "keep"
    within_noise = {**better, **{("lucas", n): a - 0.02 for n, a in [(1, 0.8), (2, 0.84)]}}
    within_noise.update({("theo", n): 0.99 for n in (1, 2, 3)})
    candidate = summarize(runs(within_noise))
    assert candidate["mean"] > baseline["mean"]
    assert verdict(candidate, baseline) == "keep"
    steady = {("lucas", n): 0.84 for n in (1, 2, 3)} | {("theo", n): 0.9 for n in (1, 2, 3)}
    steady_baseline = summarize(runs(steady))  # no spread at all
    fewer_on_lucas = {("lucas", n): 0.82 for n in (1, 2, 3)} | {
        ("theo", n): 0.99 for n in (1, 2, 3)
    }
    assert verdict(summarize(runs(fewer_on_lucas)), steady_baseline) == "drop"
    assert verdict(steady_baseline, summarize(runs(fewer_on_lucas))) == "drop"  # lower mean


def test_parse_variant_splits_overrides_on_spaces_so_values_keep_their_commas():
    variant = parse_variant("plain=model.config.n_mels=40  train.augment.speed=[0.8,1.2]")
    assert variant == Variant("plain", ("model.config.n_mels=40", "train.augment.speed=[0.8,1.2]"))
    assert parse_variant("mean_pool=model.config.time_pooling=mean").overrides == (
        "model.config.time_pooling=mean",
    )


@pytest.mark.parametrize(
    "text", ["no_overrides", "empty=", "=model.x=1", "bad name=model.x=1", "x=model.config.n_mels"]
)
def test_parse_variant_refuses_malformed_text(text):
    with pytest.raises(ValueError):
        parse_variant(text)


def test_parse_variants_puts_the_default_first_and_wants_unique_names():
    variants = parse_variants(["a=train.epochs=10", "b=seed=3"])
    assert [v.name for v in variants] == [DEFAULT_VARIANT, "a", "b"]
    assert variants[0].overrides == ()
    assert [v.name for v in parse_variants(["a=x=1"], with_default=False)] == ["a"]
    with pytest.raises(ValueError, match="unique"):
        parse_variants(["a=x=1", "a=y=2"])
    with pytest.raises(ValueError, match="unique"):
        parse_variants([f"{DEFAULT_VARIANT}=x=1"])
    with pytest.raises(ValueError, match="no variant"):
        parse_variants([], with_default=False)


def test_markdown_table_has_a_row_per_variant_with_its_verdict():
    variants = parse_variants(["better=train.epochs=10"])
    summaries = {
        DEFAULT_VARIANT: summarize(runs(ACCURACY)),
        "better": summarize(runs({k: a + 0.01 for k, a in ACCURACY.items()})),
    }
    table = markdown_table(summaries, variants).splitlines()
    assert len(table) == 4
    assert table[0].startswith("| variant | overrides | mean")
    assert "jackson | lucas | theo" in table[0]
    assert table[2].startswith("| default | (recipe as given) | **0.900**")
    assert "lucas 0.840 (0.040)" in table[2] and table[2].endswith("| baseline |")
    assert "`train.epochs=10`" in table[3] and table[3].endswith("| keep |")


def test_run_loso_reuses_the_runs_its_log_holds(tmp_path, monkeypatch):
    variants = parse_variants(["mean=model.config.time_pooling=mean"])
    ran = []

    def fake_scenario(name, data, overrides, threads, workdir):
        ran.append((name, tuple(overrides)))
        return {"scenario": name, "test_accuracy": 0.5 + 0.1 * len(ran)}

    monkeypatch.setattr(real_speech, "run_scenario", fake_scenario)
    log = tmp_path / "runs.jsonl"
    args = (tmp_path, ["train.epochs=1"], variants, ["a", "b"], [1, 2], 1, log)
    first = real_speech.run_loso(*args)
    assert len(ran) == 8
    assert ran[0] == ("a", ("train.epochs=1", "seed=1"))
    assert ran[-1] == ("b", ("train.epochs=1", "model.config.time_pooling=mean", "seed=2"))
    assert len(log.read_text().splitlines()) == 8
    again = real_speech.run_loso(*args)
    assert len(ran) == 8
    assert again == first
    assert json.loads(log.read_text().splitlines()[0])["variant"] == DEFAULT_VARIANT
