"""``bench.md``: the figures of ``bench.json`` as one markdown table (the README quotes it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import parallel_sweep, processes

HIGH_LOAD = 1.5


def _yes(flag: bool | None) -> str:
    return "" if flag is None else ("yes" if flag else "**no**")


def _s(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.0f} s"


def _projected(t: dict[str, Any]) -> str:
    if not t.get("stopped_at_budget") or not t.get("projected_train_s"):
        return ""
    return f"; all epochs would take ~{t['projected_train_s'] / 60:.0f} min here"


def _fit(fit: dict[str, Any]) -> str:
    steps = fit.get("marginal_s_per_audio_hour") or []
    if not steps or min(steps) <= 0:
        return " (no growth measured: fixed costs dominate)"
    return f"; each extra audio-hour costs {' then '.join(f'{m:.0f} s' for m in steps)}"


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    out: list[tuple[str, str, str, str, str]] = []
    d = r.get("details", {})
    tp = d.get("train_throughput")
    if tp:
        out.append(
            (
                "Training throughput: `fit` / bare PyTorch loop",
                f"{tp['ratio']:.2f} ({tp['ours_samples_per_s']:.1f} vs "
                f"{tp['bare_samples_per_s']:.1f} samples/s)",
                f">= {tp['target']}",
                _yes(tp["met"]),
                str(tp["n"]),
            )
        )
        probe = tp.get("threads_probe") or {}
        steps = {k.rsplit("_", 1)[1]: v for k, v in probe.items() if k.startswith("step_ms_")}
        if len(steps) > 1:
            batch, samples = probe["batch"]
            out.append(
                (
                    f"One training step ({batch} x {samples} samples) by torch threads",
                    ", ".join(f"{n} thread(s) {ms:.0f} ms" for n, ms in steps.items()),
                    "",
                    "",
                    str(probe["steps"]),
                )
            )
    tta = r.get("time_to_accuracy")
    if tta:
        target = tta["target_accuracy"]
        label = f"{target:.0%}" if target else "(no target)"
        for key, name in (("ours", "our recipe"), ("hf_trainer", "HF Trainer guide recipe")):
            t = tta.get(key)
            if not t:
                continue
            cut = ", stopped at time budget" if t.get("stopped_at_budget") else ""
            out.append(
                (
                    f"Time to {label} test accuracy, {name}",
                    f"{_s(t['time_to_target_s'])} (final accuracy {t['final_accuracy']:.3f} "
                    f"after {t['train_s']:.0f} s, {t['epochs_done']:g}/{t['epochs_planned']:g} "
                    f"epochs{cut}{_projected(t)})",
                    "",
                    "",
                    str(tta["n"]),
                )
            )
    noop = d.get("noop_repro")
    if noop:
        out.append(
            (
                "`dvc repro`, nothing changed",
                f"{noop['median_s']:.2f} s",
                f"< {noop['target_s']:g} s",
                _yes(noop["met"]),
                str(noop["n"]),
            )
        )
        change = noop.get("after_param_change")
        if change:
            out.append(
                (
                    f"`dvc repro` after `{change['param']}`",
                    f"ran {', '.join(change['ran']) or 'nothing'} ({change['wall_s']:.0f} s)",
                    "train, evaluate",
                    _yes(change["as_expected"]),
                    "1",
                )
            )
    fs = r.get("featurize_scaling")
    if fs:
        pts = fs["points"]
        scales = " / ".join(f"{p['scale']}x" for p in pts)
        out.append(
            (
                f"Featurize {scales}: wall time",
                " / ".join(f"{p['wall_s']:.1f} s" for p in pts) + _fit(fs["time_fit"]),
                "linear or better",
                _yes(not fs["time_fit"].get("superlinear")),
                "/".join(str(p["n"]) for p in pts),
            )
        )
        out.append(
            (
                f"Featurize {scales}: audio-seconds per second",
                " / ".join(f"{p['audio_s_per_s']:.0f}" for p in pts),
                "",
                "",
                "/".join(str(p["n"]) for p in pts),
            )
        )
        growth = fs["memory_growth"]
        out.append(
            (
                f"Featurize {scales}: peak RSS, process tree (anonymous)",
                " / ".join(
                    f"{p['peak_tree_rss_mb']:.0f} ({p['peak_tree_anon_mb']:.0f}) MB" for p in pts
                ),
                "flat",
                _yes(growth["peak_tree_anon"] < 1.5),
                "/".join(str(p["n"]) for p in pts),
            )
        )
    out += disk_rows(r.get("disk_per_audio_hour"))
    out += processes.rows(d.get("processes"))
    out += parallel_sweep.rows(d.get("parallel_sweep"))
    pr = r.get("predict")
    if pr:
        o, p = pr["ours"], pr["pipeline"]
        out.append(
            (
                f"Predict, {pr['clip_s']:g} s clip, batch 1: p50 / p95 latency",
                f"Classifier {o['latency_p50_ms']:.1f} / {o['latency_p95_ms']:.1f} ms; "
                f"pipeline {p['latency_p50_ms']:.1f} / {p['latency_p95_ms']:.1f} ms",
                "",
                "",
                str(pr["latency_calls"]),
            )
        )
        out.append(
            (
                f"Predict, batch {pr['batch']}: throughput",
                f"Classifier {o['throughput_clips_per_s']:.1f} clips/s; "
                f"pipeline {p['throughput_clips_per_s']:.1f} clips/s",
                "",
                "",
                str(pr["throughput_rounds"]),
            )
        )
    rss = r.get("peak_rss_mb")
    if rss:
        out.append(
            (
                "Peak RSS per stage (process tree)",
                ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items()),
                "",
                "",
                "1",
            )
        )
    return out


def disk_rows(disk: dict[str, Any] | None) -> list[tuple[str, str, str, str, str]]:
    """Per scale: MB per audio-hour of each stage and in total, against the PCM bound."""
    out: list[tuple[str, str, str, str, str]] = []
    for p in (disk or {}).get("points", []):
        per_hour = p["disk_per_audio_hour_mb"]
        stages = ", ".join(f"{k} {v:.0f}" for k, v in per_hour.items() if k != "total")
        out.append(
            (
                f"Disk per audio-hour, {p['scale']}x data ({p['audio_s'] / 3600:.1f} h, "
                f"cache {p['cache_type']}, {p['storage_dtype']})",
                f"{per_hour['total']:.0f} MB = {p['x_pcm16']:.2f}x 16-bit PCM at "
                f"{p['sampling_rate']} Hz ({p['pcm16_per_audio_hour_mb']:.0f} MB/h); "
                f"per stage MB/h: {stages}",
                f"<= {disk['bound_x_pcm16']:g}x",
                _yes(p["within_bound"]),
                "1",
            )
        )
    return out


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    start, end = m["loadavg_start"], m.get("loadavg_end") or ["?"]
    loads = [x for t in r.get("timings_s", {}).values() for x in t.get("load_1min", [])]
    peak = max([start[0], *loads])
    lines = [
        f"`{r['command']}` on {r['created']}, commit {r['source'].get('git_commit')}: "
        f"{m['cpu_count']} CPU cores, torch {m['torch']}, "
        f"{'GPU' if m.get('gpu') else 'no GPU'}. "
        f"Load average (1 min): {start[0]} at start, {end[0]} at end, {peak:g} at most"
        + (
            " — **the cores were shared with other jobs: absolute times are slower than on an "
            "idle machine; every comparison is a ratio measured side by side**."
            if peak > HIGH_LOAD
            else "."
        ),
        "",
        "| figure | result | target | met | n |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {' | '.join(row)} |" for row in rows(r)]
    return "\n".join(lines) + "\n"


def write_markdown(result: dict[str, Any], path: Path) -> None:
    path.write_text(render(result), encoding="utf-8")
