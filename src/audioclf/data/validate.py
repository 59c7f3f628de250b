"""Check every audio item before anything is written: hash it, decode it, name what is wrong."""

from __future__ import annotations

import hashlib
from typing import Any

from datasets import Dataset, Value, concatenate_datasets

from audioclf.data import audio
from audioclf.data.columns import AUDIO, LABEL, PROBLEM

_RAW_LABEL = "_label"


class BadAudioError(ValueError):
    """Items are unusable and ``data.on_bad_audio`` is ``error``."""


def inspect(ds: Dataset, num_proc: int | None = None) -> Dataset:
    """Add ``sha256`` (of the audio bytes), ``duration_s`` and ``problem`` (None when fine)."""
    if PROBLEM not in ds.column_names:
        ds = ds.add_column(PROBLEM, [None] * len(ds), feature=Value("string"))
    num_labels = ds.features[LABEL].num_classes
    # The check runs on the audio, the problem and the labels as stored (plain integers), and
    # its result is joined back: a map over the whole dataset would write the label column
    # again, and datasets refuses to write a ClassLabel value out of range before the check
    # could name the item.
    checked = (
        ds.select_columns([AUDIO, PROBLEM])
        .add_column(_RAW_LABEL, list(ds[LABEL]), feature=Value("int64"))
        .map(
            _inspect_batch,
            batched=True,
            batch_size=64,
            num_proc=num_proc if num_proc and num_proc > 1 and len(ds) > 64 else None,
            fn_kwargs={"num_labels": num_labels},
            remove_columns=[AUDIO, PROBLEM, _RAW_LABEL],
            desc="Checking audio",
        )
    )
    return concatenate_datasets([ds.remove_columns(PROBLEM), checked], axis=1)


def _inspect_batch(batch: dict[str, list[Any]], num_labels: int) -> dict[str, list[Any]]:
    hashes, durations, problems = [], [], []
    for item, label, problem in zip(batch[AUDIO], batch[_RAW_LABEL], batch[PROBLEM], strict=True):
        data = item.get("bytes")
        hashes.append(hashlib.sha256(data).hexdigest() if data else "")
        duration = 0.0
        if problem is None and not data:
            problem = "no audio bytes"
        if problem is None and not 0 <= label < num_labels:
            problem = f"unknown label {label!r}"
        if problem is None:
            try:
                samples, rate = audio.decode(data)
                duration = samples.size / rate
                problem = audio.problem(samples)
            except audio.AudioError as err:
                problem = str(err)
        durations.append(duration)
        problems.append(problem)
    return {"sha256": hashes, "duration_s": durations, PROBLEM: problems}


def drop_bad(ds: Dataset, on_bad_audio: str, source: str) -> tuple[Dataset, list[dict[str, str]]]:
    """Apply ``data.on_bad_audio``: ``error`` raises naming each bad file, ``skip`` lists them."""
    if on_bad_audio not in ("error", "skip"):
        raise ValueError(f"data.on_bad_audio must be 'error' or 'skip', not {on_bad_audio!r}")
    problems = ds[PROBLEM]
    bad = [i for i, p in enumerate(problems) if p]
    skipped = [{"path": ds[i]["path"], "reason": problems[i]} for i in bad]
    if skipped and on_bad_audio == "error":
        listing = "\n".join(f"  {s['path']}: {s['reason']}" for s in skipped[:20])
        more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        raise BadAudioError(
            f"{len(skipped)} bad item(s) in {source}:\n{listing}{more}\n"
            "Fix them, or set data.on_bad_audio=skip to leave them out (listed in the manifest)."
        )
    good = ds.select([i for i, p in enumerate(problems) if not p]) if bad else ds
    return good.remove_columns(PROBLEM), skipped
