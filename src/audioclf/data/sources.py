"""Data sources. Each returns the raw dataset in MInDS-14's schema.

Schema: ``path`` (str), ``audio`` (``Audio(decode=False)`` with the file's bytes embedded),
``transcription`` (str), ``intent_class`` (``ClassLabel`` with names), ``lang_id`` where the
source knows it, plus every other column the source has (``speaker``...). Bytes are embedded so
the raw stage output is self-contained: it can be hashed, audited and re-decoded later.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import datasets
from datasets import Audio, ClassLabel, Dataset, Features, Value
from omegaconf import DictConfig

from audioclf.config import ConfigError, require
from audioclf.data.columns import AUDIO, LABEL, PROBLEM, SPLIT


class DataSourceError(RuntimeError):
    """A data source cannot be read: unreachable, missing files or columns, bad labels."""


def load_source(data: DictConfig) -> Dataset:
    """Load the configured source (``data.source``: ``hub`` or ``audiofolder``)."""
    source = require(data, "source")
    if source == "hub":
        return load_hub(
            require(data, "path"),
            config_name=data.get("config_name"),
            split=data.get("split_name"),
            revision=data.get("revision"),
            audio_column=data.get("audio_column") or AUDIO,
            label_column=data.get("label_column") or LABEL,
        )
    if source == "audiofolder":
        return load_audiofolder(
            Path(require(data, "path")),
            label_column=data.get("label_column") or "label",
            label_names=data.get("label_names"),
        )
    raise ConfigError(f"data.source must be 'hub' or 'audiofolder', not {source!r}")


def load_hub(
    path: str,
    *,
    config_name: str | None,
    split: str | None,
    revision: str | None,
    audio_column: str = AUDIO,
    label_column: str = LABEL,
) -> Dataset:
    """A Hub dataset repo in parquet layout, by id at a pinned revision or as a local replica.

    A local directory laid out like the Hub repo (dataset card with ``configs`` + parquet
    files) goes through the same ``load_dataset`` call as the Hub id, with its own cache.
    ``split=None`` loads every split of the config, each item's split name in column
    ``split`` (``data.split.column: split`` keeps them as the dataset gives them).
    """
    local = Path(path).is_dir()
    where = f"local directory {path}" if local else f"Hugging Face Hub dataset '{path}'"
    try:
        ds = datasets.load_dataset(
            path,
            config_name,
            split=split,
            revision=None if local else revision,
            cache_dir=_local_cache_dir(Path(path)) if local else None,
        )
        if split is None:
            ds = datasets.concatenate_datasets(
                [part.add_column(SPLIT, [name] * len(part)) for name, part in ds.items()]
            )
    except Exception as err:
        hint = (
            ""
            if local
            else " The Hub cannot be reached from this machine (offline?): use data=embedded or "
            "data=audiofolder, or copy the repo and set data.path to the local directory."
        )
        raise DataSourceError(
            f"cannot load {where} (config {config_name!r}, split {split!r}, revision "
            f"{revision!r}): {type(err).__name__}: {err}.{hint}"
        ) from err
    missing = [c for c in (audio_column, label_column) if c not in ds.column_names]
    if missing:
        raise DataSourceError(f"{where} has no column(s) {missing}; available: {ds.column_names}")
    ds = ds.cast_column(audio_column, Audio(decode=False))
    for column, standard in ((audio_column, AUDIO), (label_column, LABEL)):
        if column != standard:
            if standard in ds.column_names:
                # The configured column takes the standard name (e.g. label_column=lang_id on
                # MInDS-14, which also has intent_class): the one it replaces is dropped.
                ds = ds.remove_columns(standard)
            ds = ds.rename_column(column, standard)
    if not isinstance(ds.features[LABEL], ClassLabel):
        ds = ds.class_encode_column(LABEL)
    if "transcription" not in ds.column_names:
        ds = ds.add_column("transcription", [""] * len(ds))
    if "path" not in ds.column_names:
        ds = ds.add_column("path", [a["path"] or "" for a in ds[AUDIO]])
    return ds


def _local_cache_dir(folder: Path) -> str:
    """A datasets cache directory for a local repo, keyed by the content of its files.

    datasets keys its cache of a local repo by the directory's name and dataset card only, not
    by the data files: an edited replica (or another one with the same name) would be served
    stale from the cache.
    """
    h = hashlib.sha256()
    files = {p.relative_to(folder): p for p in folder.rglob("*") if p.is_file()}
    for relative, file in sorted(files.items()):
        if ".git" in relative.parts:
            continue
        h.update(f"{relative.as_posix()}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                h.update(chunk)
        h.update(b"\0")
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "audioclf-local" / h.hexdigest()[:32])


def load_audiofolder(
    folder: Path, *, label_column: str = "label", label_names: Iterable[str] | None = None
) -> Dataset:
    """A user's folder of audio files with ``metadata.csv`` (HF audiofolder convention).

    ``file_name`` is relative to the folder; the label column becomes a ``ClassLabel`` with
    sorted names (or ``label_names`` when given); other columns are kept. A missing file or an
    unknown label is kept as an item with its ``PROBLEM`` set, so that validation reports (or
    skips) each one by name.
    """
    metadata = folder / "metadata.csv"
    if not metadata.is_file():
        raise DataSourceError(f"{metadata} not found (an audiofolder needs metadata.csv)")
    with metadata.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        rows = list(reader)
    missing = [c for c in ("file_name", label_column) if c not in columns]
    if missing:
        raise DataSourceError(f"{metadata} has no column(s) {missing}; columns: {columns}")
    if not rows:
        raise DataSourceError(f"{metadata} lists no files")
    names = list(label_names or sorted({row[label_column] for row in rows if row[label_column]}))
    extra = [c for c in columns if c not in ("file_name", label_column, "transcription")]
    # Rows are written with the audio column's plain storage struct and then cast (a pure
    # Arrow cast): ``Audio.encode_example`` insists on importing torchcodec, even for bytes.
    storage = Features(
        {
            "path": Value("string"),
            AUDIO: {"bytes": Value("binary"), "path": Value("string")},
            "transcription": Value("string"),
            LABEL: ClassLabel(names=names),
            **{c: Value("string") for c in extra},
            PROBLEM: Value("string"),
        }
    )
    # Tuples, not lists, besides ``rows``: datasets would try to shard over every list.
    gen_kwargs = {
        "folder": str(folder),
        "rows": rows,
        "label_column": label_column,
        "extra": tuple(extra),
        "names": tuple(names),
    }
    ds = Dataset.from_generator(
        _audiofolder_rows,
        features=storage,
        gen_kwargs=gen_kwargs,
        # datasets caches generator output by its arguments only; the files' content must be
        # part of the key, or an edited audio file would be served stale from the cache.
        fingerprint=_folder_fingerprint(folder, rows, label_column, names, extra),
    )
    return ds.cast_column(AUDIO, Audio(decode=False))


def _folder_fingerprint(
    folder: Path,
    rows: list[dict[str, str]],
    label_column: str,
    names: list[str],
    extra: list[str],
) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([rows, label_column, names, extra], sort_keys=True).encode())
    for row in rows:
        file = folder / row["file_name"]
        h.update(hashlib.sha256(file.read_bytes()).digest() if file.is_file() else b"missing")
    return h.hexdigest()[:32]


def _audiofolder_rows(
    folder: str,
    rows: list[dict[str, str]],
    label_column: str,
    extra: tuple[str, ...],
    names: tuple[str, ...],
) -> Iterable[dict]:
    index = {name: i for i, name in enumerate(names)}
    for row in rows:
        file = Path(folder) / row["file_name"]
        data = file.read_bytes() if file.is_file() else None
        label = row[label_column]
        problem = None
        if data is None:
            problem = f"file not found: {file}"
        elif label not in index:
            problem = f"unknown label {label!r} in column {label_column!r}"
        yield {
            "path": row["file_name"],
            AUDIO: {"bytes": data, "path": row["file_name"]},
            "transcription": row.get("transcription", ""),
            LABEL: index.get(row[label_column], -1),
            **{c: row[c] for c in extra},
            PROBLEM: problem,
        }
