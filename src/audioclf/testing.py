"""Helpers for tests and benchmarks: synthetic projects, tiny datasets and models, the fast recipe.

One module that the tests, the benchmarks and ``scripts/gpu_check.sh`` import, as numpy's tests
import ``numpy.testing``; no stage imports it, so editing it reruns no stage. Everything is
generated offline: short sine + noise clips at 8 kHz (a different pitch per class, so that
content differs), written as a local replica of a Hub parquet dataset repo (MInDS-14 layout) or
as an audiofolder (audio files + ``metadata.csv``). The throwaway git + DVC repositories copy
this checkout's pipeline (``conf/``, ``dvc.yaml``, ``src/audioclf``): the package is used from
a checkout (an editable install, as ``make`` makes it). ``datasets`` and the rest of
``audioclf`` are imported inside functions: tests/conftest.py sets the offline environment first.

It runs past 400 lines on purpose, as transformers' ``testing_utils`` does: one place to look
for every fixture builder, which keeps tests and benchmarks from growing copies of their own.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import soundfile as sf

if TYPE_CHECKING:
    from transformers import Wav2Vec2Model

REPO_ROOT = Path(__file__).resolve().parents[2]  # src/audioclf/testing.py
RATE = 8000
HUB_CLASSES = ("abroad", "balance", "freeze", "pay_bill")
HUB_SPEAKERS = tuple(f"speaker{i}" for i in range(6))
SMALL_SPEAKERS = ("s1", "s2", "s3", "s4", "s5")
HUB_DIR = "data/tiny_hub"
HUB_PARQUET = "en-US/train-00000-of-00001.parquet"
FOLDER_CLASSES = ("yes", "no", "stop")  # first-seen order; sorted it is no, stop, yes
FOLDER_DIR = "data/tiny_folder"
HUB_CARD = """---
configs:
- config_name: en-US
  data_files:
  - split: train
    path: en-US/train-*
---

# Tiny generated stand-in for MInDS-14 (tests only)
"""


# --------------------------------------------------------------------------- audio


def tone(
    freq: float, seconds: float, *, seed: int = 0, channels: int = 1, rate: int = RATE
) -> np.ndarray:
    """A sine at ``freq`` plus a little seeded noise, (frames,) or (frames, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    if channels == 1:
        return mono.astype(np.float32)
    # Channels differ (scaled copies), so a downmix is not the same as any one channel.
    return np.stack([mono * (1.0 - 0.3 * c) for c in range(channels)], axis=1).astype(np.float32)


def encode(samples: np.ndarray, fmt: str = "WAV", rate: int = RATE) -> bytes:
    """Encode samples as a WAV/FLAC/OGG file's bytes."""
    subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS"}[fmt]
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def corrupt_bytes() -> bytes:
    """Bytes that look like the start of a WAV file but are not decodable audio."""
    return b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (or of ``root`` itself), by relative path."""
    root = Path(root)
    if root.is_file():
        return {root.name: sha256(root.read_bytes())}
    return {
        str(p.relative_to(root)): sha256(p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------- Hub replica


def hub_rows(
    classes: Sequence[str] = HUB_CLASSES,
    speakers: Sequence[str] = HUB_SPEAKERS,
    clips_per_pair: int = 2,
) -> list[dict[str, Any]]:
    """Rows in MInDS-14's schema: one clip per class x speaker x take, 0.3-0.5 s each."""
    rows = []
    for c, name in enumerate(classes):
        for s, speaker in enumerate(speakers):
            for take in range(clips_per_pair):
                seconds = 0.3 + 0.1 * ((s + take) % 3)
                seed = 1000 * c + 10 * s + take
                path = f"en-US/{speaker}/{name}_{take}.wav"
                rows.append(
                    {
                        "path": path,
                        "audio": {
                            "bytes": encode(tone(220.0 * (c + 1), seconds, seed=seed)),
                            "path": path,
                        },
                        "transcription": f"{name} please",
                        "english_transcription": f"{name} please",
                        "intent_class": c,
                        "lang_id": 0,
                        "speaker": speaker,
                    }
                )
    return rows


def write_hub_repo(
    root: Path,
    rows: list[dict[str, Any]],
    classes: Sequence[str] = HUB_CLASSES,
    *,
    force_labels: dict[int, int] | None = None,
    drop_bytes: Sequence[int] = (),
) -> Path:
    """Write a Hub dataset repo replica: a card with ``configs`` and one parquet shard.

    Two kinds of broken rows that ``datasets`` would refuse to write are patched into the
    Arrow table afterwards: ``force_labels`` ({row: value}, e.g. out of range) and
    ``drop_bytes`` (rows whose audio has a path but no bytes).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Audio, ClassLabel, Dataset, Features, Value

    features = Features(
        {
            "path": Value("string"),
            "audio": Audio(sampling_rate=RATE, decode=False),
            "transcription": Value("string"),
            "english_transcription": Value("string"),
            "intent_class": ClassLabel(names=list(classes)),
            "lang_id": ClassLabel(names=["en-US"]),
            "speaker": Value("string"),
        }
    )
    # Audio.encode_example wants torchcodec even for ready-made bytes: build the plain storage
    # struct, then cast (Arrow only) to the real features.
    storage = Features({**features, "audio": {"bytes": Value("binary"), "path": Value("string")}})
    ds = Dataset.from_dict({key: [row[key] for row in rows] for key in features}, features=storage)
    parquet = root / HUB_PARQUET
    parquet.parent.mkdir(parents=True, exist_ok=True)
    ds.cast(features).to_parquet(str(parquet))
    if force_labels or drop_bytes:
        table = pq.read_table(parquet)
        labels = [(force_labels or {}).get(i, row["intent_class"]) for i, row in enumerate(rows)]
        audio = [
            {"bytes": None if i in drop_bytes else row["audio"]["bytes"], "path": row["path"]}
            for i, row in enumerate(rows)
        ]
        for name, values in (("intent_class", labels), ("audio", audio)):
            index = table.schema.get_field_index(name)
            field_ = table.schema.field(index)
            table = table.set_column(index, field_, pa.array(values, field_.type))
        pq.write_table(table, parquet)
    (root / "README.md").write_text(HUB_CARD, encoding="utf-8")
    return root


# --------------------------------------------------------------------------- audiofolder


@dataclass
class FolderItem:
    file_name: str
    label: str
    speaker: str
    data: bytes | None  # None: listed in metadata.csv but no file
    extra: dict[str, str] = field(default_factory=dict)


def folder_items(speakers: int = 6) -> list[FolderItem]:
    """One clip per class x speaker, cycling WAV/FLAC/OGG; every third clip is stereo and
    the first speaker's clips last 1.5 s (longer than a second)."""
    formats = ("WAV", "FLAC", "OGG")
    items = []
    n = 0
    for s in range(speakers):
        for c, name in enumerate(FOLDER_CLASSES):
            fmt = formats[n % 3]
            seconds = 1.5 if s == 0 else 0.3 + 0.05 * (n % 4)
            samples = tone(300.0 * (c + 1), seconds, seed=n, channels=2 if n % 3 == 0 else 1)
            items.append(
                FolderItem(
                    file_name=f"clips/{name}_{s}.{fmt.lower()}",
                    label=name,
                    speaker=f"s{s}",
                    data=encode(samples, fmt),
                    extra={"note": f"take {n}"},
                )
            )
            n += 1
    return items


def write_audiofolder(
    root: Path, items: Sequence[FolderItem], *, label_column: str = "label"
) -> Path:
    """Write the audio files and ``metadata.csv`` (file_name, label, speaker, extras)."""
    root.mkdir(parents=True, exist_ok=True)
    extra = list(items[0].extra)
    with (root / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", label_column, "speaker", *extra])
        for item in items:
            writer.writerow(
                [item.file_name, item.label, item.speaker, *(item.extra[k] for k in extra)]
            )
            if item.data is not None:
                file = root / item.file_name
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_bytes(item.data)
    return root


# --------------------------------------------------------------------------- projects


@dataclass
class Project:
    """A throwaway project directory (the current directory while a test runs).

    It holds a copy of ``conf/`` and a ``params.yaml`` composed from it with overrides, the
    way ``audioclf params`` / ``dvc exp run`` write it; paths in params are relative to it.
    """

    root: Path
    overrides: list[str] = field(default_factory=list)

    def write_params(self, *overrides: str) -> Path:
        from audioclf.config import write_params

        self.overrides = list(overrides)
        return write_params(self.overrides, root=self.root)

    def cfg(self, *overrides: str):
        from audioclf.config import load_params

        return load_params(list(overrides), root=self.root)

    def hashes(self, *paths: str) -> dict[str, dict[str, str]]:
        return {p: tree_hashes(self.root / p) for p in paths}


def make_project(root: Path) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO_ROOT / "conf", root / "conf")
    return Project(root)


HUB_OVERRIDES = (
    f"data.path={HUB_DIR}",
    f"data.tracked_path={HUB_DIR}",
    "data.split.validation_size=0.2",  # 6 speakers: 1-2 for test, then 1-2 for validation
    "audio.num_proc=1",
)
FOLDER_OVERRIDES = (
    "data=audiofolder",
    f"data.path={FOLDER_DIR}",
    "data.split.validation_size=0.2",  # 18 clips of 3 classes: 3 or more for validation
    "audio.num_proc=1",
)

# The fast recipe (conf/debug/fast.yaml): a model and training small enough to run in seconds
# on the tiny generated data; the benchmarks' fast pipeline uses the same mode.
TINY_TRAIN_OVERRIDES = ("debug=fast",)


# --------------------------------------------------------------------------- git + DVC repos


def dvc(
    repo: Path, *args: str, check: bool = True, timeout: float = 300, stderr: bool = True
) -> str:
    """Run the venv's dvc in ``repo``; stages' ``python`` is the venv's, importing repo/src.

    Returns stdout and (unless ``stderr=False``, e.g. for ``--json``) stderr."""
    venv_bin = Path(sys.executable).parent  # the venv running the tests
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(repo / "src"),
        "DVC_SITE_CACHE_DIR": str(repo.parent / "dvc-site-cache"),
        "DVC_NO_ANALYTICS": "1",
    }
    dvc_exe = venv_bin / "dvc" if (venv_bin / "dvc").exists() else shutil.which("dvc")
    result = subprocess.run(
        [str(dvc_exe), *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    if check:
        assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{output}"
    return output if stderr else result.stdout


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=tests", "-c", "user.email=tests@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"git {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def copy_pipeline(root: Path, repo: Path = REPO_ROOT) -> Path:
    """A new git + DVC repository at ``root`` holding ``repo``'s pipeline: conf/, dvc.yaml,
    .dvc/config, .gitignore and the package's code (no data, no params.yaml, no commit).
    The tests' throwaway repositories and the benchmarks' workspace are both made here."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "conf").exists():
        shutil.copytree(repo / "conf", root / "conf")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "init", "-q")
    for name in (".dvc/config", "dvc.yaml", ".gitignore"):
        shutil.copy2(repo / name, root / name)
    shutil.copytree(
        repo / "src" / "audioclf",
        root / "src" / "audioclf",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return root


def make_dvc_repo(root: Path) -> Project:
    """A git + DVC repository with this project's pipeline (:func:`copy_pipeline`), whose data
    is a tiny Hub replica (4 classes x 5 speakers x 2) and whose params are the fast recipe."""
    project = make_project(root)
    copy_pipeline(project.root)
    write_hub_repo(project.root / HUB_DIR, hub_rows(speakers=SMALL_SPEAKERS))
    project.write_params(*HUB_OVERRIDES, *TINY_TRAIN_OVERRIDES)
    return project


# --------------------------------------------------------------------------- DVC's queue

QUEUE_ACTIVE = ("Running", "Queued")


def queue_start(repo: Path, jobs: int, **env: str) -> str:
    """`dvc queue start -j JOBS` in ``repo`` (``env``: variables its experiments see), its
    output through a file: the workers it leaves behind keep the output open, so through a
    pipe (as :func:`dvc` reads it) it would end with them."""
    venv_bin = Path(sys.executable).parent
    full_env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(repo / "src"),
        "DVC_SITE_CACHE_DIR": str(repo.parent / "dvc-site-cache"),
        "DVC_NO_ANALYTICS": "1",
        **env,
    }
    log = repo.parent / "queue-start.log"
    with log.open("w") as out:
        subprocess.run(
            [str(venv_bin / "dvc"), "queue", "start", "-j", str(jobs)],
            cwd=repo,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=True,
        )
    return log.read_text()


def wait_for_queue(repo: Path, timeout: float) -> list[list[str]]:
    """Poll `dvc queue status` until no task is running or queued; its last task rows, split
    (``[rev, name, time..., status]``)."""
    deadline = time.monotonic() + timeout
    while True:
        status = dvc(repo, "queue", "status")
        rows = [line.split() for line in status.splitlines()[1:] if line.strip()]
        tasks = [row for row in rows if row[0] != "Worker"]  # "Worker status: 0 active, ..."
        if not any(task[-1] in QUEUE_ACTIVE for task in tasks if task):
            return tasks
        assert time.monotonic() < deadline, status
        time.sleep(3)


# --------------------------------------------------------------------------- tiny saved models

MODEL_LABELS = ("yes", "no", "stop")
TINY_MODEL = (
    "model.config.hidden_size=32",
    "model.config.num_hidden_layers=1",
    "model.config.num_attention_heads=2",
    "model.config.intermediate_size=64",
    "model.config.classifier_proj_size=16",
    "model.config.num_conv_pos_embeddings=16",
    "model.config.num_conv_pos_embedding_groups=4",
    "model.config.conv_dim=[16,16,16,16,16,16]",
    "model.config.do_stable_layer_norm=false",
)
# A model whose extractor returns an attention mask (layer norm, as wav2vec2-large-lv60).
MASKED_MODEL = (
    "model.config.feat_extract_norm=layer",
    "model.feature_extractor.return_attention_mask=true",
)


def save_tiny_model(
    path: Path,
    labels: tuple[str, ...] | None = MODEL_LABELS,
    *extra: str,
    seed: int = 3,
    window_s: float | None = None,
) -> Path:
    """A random tiny Wav2Vec2 (8 kHz) + its extractor saved in ``path``, as the train stage
    exports a model; ``labels=None``: no label names. No training: equality with
    ``transformers.pipeline`` does not need a trained model. The classifier weights are scaled
    up so that scores are far from uniform and labels differ from clip to clip.

    ``window_s``: saved as the train stage exports a model trained on clips that long (its
    default scoring window); None: a model folder that records no window."""
    import torch

    from audioclf.config import compose_conf
    from audioclf.models.build import build_model
    from audioclf.models.extractor import build_feature_extractor
    from audioclf.training.loop import save_model

    cfg = compose_conf(["model=tiny", *TINY_MODEL, *extra], root=REPO_ROOT)
    torch.manual_seed(seed)  # a seed whose random model tells these test clips apart
    model = build_model(cfg.model, labels or ("a", "b", "c"))
    with torch.no_grad():
        model.classifier.weight.mul_(100)  # same argmax, scores far from uniform
    if labels is None:  # what a config saved without label maps looks like
        model.config.id2label = {i: f"LABEL_{i}" for i in range(3)}
        model.config.label2id = {f"LABEL_{i}": i for i in range(3)}
    save_model(model, build_feature_extractor(cfg.model), path, window_s=window_s)
    return path


def clips_at_model_rate() -> list[np.ndarray]:
    """Different lengths (two pairs of equal length) and pitches, at 8 kHz."""
    return [
        tone(300.0, 0.5, seed=1),
        tone(900.0, 0.31, seed=2),
        tone(1500.0, 0.5, seed=3),
        tone(600.0, 0.8, seed=4),
        tone(2400.0, 0.31, seed=5),
        np.random.default_rng(6).uniform(-0.5, 0.5, 3000).astype(np.float32),
    ]


def by_label(items: list[dict]) -> dict[str, float]:
    """``[{"label": ..., "score": ...}, ...]`` (a pipeline's or a prediction's) as a dict."""
    return {item["label"]: item["score"] for item in items}


class Captured(Protocol):
    """pytest's ``capsys`` as :func:`run_cli` uses it."""

    def readouterr(self) -> tuple[str, str]: ...


def run_cli(capsys: Captured, *argv: str) -> tuple[int, str, str]:
    """``audioclf ARGV...`` in this process: its exit code, stdout and stderr."""
    from audioclf.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@dataclass
class RegisteredModel:
    """A tiny model logged as the served pyfunc in a sqlite MLflow store, registered as
    ``name`` version 1 with ``alias``: what the evaluate stage leaves in a store."""

    uri: str
    run_id: str
    model_dir: Path
    name: str
    alias: str


def register_tiny_model(root: Path, name: str, alias: str, window_s: float) -> RegisteredModel:
    """A new sqlite store under ``root`` holding one run with a tiny model (trained, as saved,
    on clips of ``window_s``) logged and registered (creating the store takes seconds)."""
    from mlflow.tracking import MlflowClient

    from audioclf.serving import log_pyfunc_model
    from audioclf.tracking.store import using_tracking_uri

    uri = f"sqlite:///{root / 'mlflow.db'}"
    model_dir = save_tiny_model(root / "final", window_s=window_s)
    client = MlflowClient(uri)
    experiment = client.create_experiment("t", artifact_location=(root / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    with using_tracking_uri(uri):  # the run's store, for the fluent log_model
        info = log_pyfunc_model(run_id, model_dir, name)
    assert info.registered_model_version == 1
    client.set_registered_model_alias(name, alias, "1")
    return RegisteredModel(uri, run_id, model_dir, name, alias)


# --------------------------------------------------------------------------- stage processes

VENV_BIN = Path(sys.executable).parent


def run_data_stages() -> None:
    """download, resample and featurize in this process, on the current directory's params."""
    from audioclf.stages import run_stage
    from audioclf.stages.download import download
    from audioclf.stages.featurize import featurize
    from audioclf.stages.resample import resample

    for stage in (download, resample, featurize):
        run_stage(stage, [])


def stage_env(tracking_uri: str, **extra: str) -> dict[str, str]:
    """This process's environment for a stage run as a command: the MLflow store
    ``tracking_uri``, this venv's commands first on ``PATH``, and ``extra``."""
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    }


def train_process(root: Path, tracking_uri: str, *overrides: str) -> subprocess.Popen:
    """The train stage as its own process in the project ``root`` (stderr piped, as text)."""
    return subprocess.Popen(
        [sys.executable, "-m", "audioclf.stages.train", *overrides],
        cwd=root,
        env=stage_env(tracking_uri),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def trained_dvc_repo(root: Path) -> Project:
    """:func:`make_dvc_repo` committed, after one ``dvc repro``: one MLflow run in
    ``<repo>/mlflow.db``, its id in ``reports/mlflow_run.json``."""
    project = make_dvc_repo(root)
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "baseline")
    dvc(project.root, "repro", timeout=600)
    return project


def mini_wav2vec2_encoder() -> Wav2Vec2Model:
    """A seeded wav2vec2 encoder (no classification head) small enough to save in milliseconds:
    a stand-in for a pretrained checkpoint such as facebook/wav2vec2-base."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    return Wav2Vec2Model(
        Wav2Vec2Config(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(16,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
        )
    )
