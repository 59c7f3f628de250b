"""`python -m benchmarks --smoke`: the whole suite on tiny generated data, in a throwaway copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audioclf.testing import REPO_ROOT
from benchmarks.__main__ import main

KEYS = {
    "train_throughput_ratio",
    "time_to_accuracy",
    "noop_repro_s",
    "featurize_scaling",
    "predict",
    "peak_rss_mb",
    "machine",
    "gpu",
}


def test_bench_smoke_writes_sane_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    out = tmp_path / "out" / "bench.json"

    # One torch thread: on a machine whose cores are shared, more threads make step times
    # swing by 10x and more (see threads_probe), and the ratio with them.
    assert main(["--smoke", "--threads", "1", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out

    r = json.loads(out.read_text())
    assert set(r) >= KEYS
    assert r["mode"] == "smoke" and r["errors"] == {}
    assert r["gpu"] is None and "gpu" in r["notes"]

    m = r["machine"]
    assert m["cpu_count"] >= 1 and m["torch"]
    assert len(m["loadavg_start"]) == 3 and len(m["loadavg_end"]) == 3

    assert 0 < r["train_throughput_ratio"] < 2
    tp = r["details"]["train_throughput"]
    assert tp["ours_samples_per_s"] > 0 and tp["bare_samples_per_s"] > 0
    assert tp["threads_probe"]["step_ms_threads_1"] > 0
    assert r["machine"]["torch_threads"] == 1 and r["command"].endswith("--threads 1")

    tta = r["time_to_accuracy"]
    for recipe in ("ours", "hf_trainer"):
        assert 0 <= tta[recipe]["final_accuracy"] <= 1
        assert tta[recipe]["evals"] and tta[recipe]["train_s"] > 0
        assert tta[recipe]["time_to_target_s"] is None  # --smoke sets no target
    assert tta["hf_trainer"]["optimizer_steps"] >= 1

    assert 0 < r["noop_repro_s"] < 60
    noop = r["details"]["noop_repro"]
    assert noop["stages_ran"] == []
    assert noop["stages_skipped_every_run"] == ["download", "resample", "featurize"]

    points = r["featurize_scaling"]["points"]
    assert [p["scale"] for p in points] == [1, 4]
    assert points[1]["audio_s"] == pytest.approx(4 * points[0]["audio_s"], rel=1e-3)
    for p in points:
        assert p["audio_s_per_s"] > 0 and p["peak_tree_rss_mb"] > 0 and p["n"] >= 1

    disk = r["disk_per_audio_hour"]
    small, double = disk["points"]
    assert (small["scale"], double["scale"]) == (1, 2)
    assert double["audio_s"] == pytest.approx(2 * small["audio_s"], rel=1e-3)
    for p in (small, double):
        assert set(p["disk_per_audio_hour_mb"]) == {
            "download", "resample", "featurize", "dvc_cache_not_shared", "total"
        }
        # 16-bit PCM kept once per stage and shared with the cache: not the float32 copies
        assert p["stage_mb"]["resample"] <= 1.2 * p["pcm16_mb"] + 0.1
        assert p["cache_not_shared_mb"] < 0.1 * p["total_mb"]
    # The generated source is WAV, itself 16-bit PCM: raw + resampled + features make 3x, and
    # each small file's metadata and block rounding more, which more data spreads thinner.
    assert double["x_pcm16"] < small["x_pcm16"] < 4
    assert "Disk per audio-hour, 2x data" in out.with_suffix(".md").read_text()

    pr = r["predict"]
    for side in ("ours", "pipeline"):
        assert 0 < pr[side]["latency_p50_ms"] <= pr[side]["latency_p95_ms"]
        assert pr[side]["throughput_clips_per_s"] > 0
    assert pr["ratio_latency_p50"] > 0 and pr["ratio_throughput"] > 0

    assert set(r["peak_rss_mb"]) == {"download", "resample", "featurize"}
    assert all(v > 0 for v in r["peak_rss_mb"].values())

    table = out.with_suffix(".md").read_text()
    assert "| figure | result | target | met | n |" in table
    assert "Training throughput" in table and "dvc repro" in table
