"""What a run keeps besides its params: the run file that hands it from stage to stage, its data
inputs (train, validation and test, which its metrics name), environment, ``dvc.lock``, training
outputs, validation figures and the model's digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
from datasets import DatasetInfo, Features, Value
from dvc.utils.serialize import dumps_yaml, loads_yaml
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import HuggingFaceDatasetSource, LocalArtifactDatasetSource
from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from omegaconf import DictConfig, OmegaConf

from audioclf.data.columns import AUDIO, LABEL
from audioclf.dvc_stages import data_stages
from audioclf.tracking import params, store, tags

LOCK_ARTIFACT = "lineage/dvc.lock"
CONFIG_ARTIFACT = "config/params.yaml"
ENVIRONMENT_ARTIFACT = "environment/environment.json"
PACKAGES_ARTIFACT = "environment/packages.txt"


def write_run_file(
    path: Path, run_id: str, experiment_id: str, tracking: DictConfig | None = None
) -> None:
    """The declared output that hands the run to ``evaluate`` (and to lineage audits).

    Under ``dvc exp run`` it is committed with the experiment, so the experiment names its
    MLflow run (and the run names the experiment in its tag ``dvc.experiment``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "tracking_uri": store.tracking_uri(tracking),
        "dvc_experiment": os.environ.get("DVC_EXP_NAME"),
        "sweep": tags.sweep_name(tracking),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")


def read_run_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run the train stage first")
    return json.loads(path.read_text())


def log_environment(run_id: str, described: dict[str, Any], packages: list[str]) -> None:
    """The environment as ``env.*`` tags and ``environment/`` artifacts (with every package)."""
    client = MlflowClient()
    client.log_batch(
        run_id, tags=[RunTag(f"env.{k}", str(v)) for k, v in described.items() if v is not None]
    )
    client.log_dict(run_id, described, ENVIRONMENT_ARTIFACT)
    client.log_text(run_id, "\n".join(packages) + "\n", PACKAGES_ARTIFACT)


# The splits a run logs as its inputs, each under its own MLflow context.
SPLIT_CONTEXTS = ("train", "validation", "test")
# MLflow stores a dataset digest in 36 characters: the manifest's sha256, cut to its first 32
# hex digits (the run's tag ``data.digest`` and each input's profile hold all 64).
DIGEST_CHARS = 32
_MLFLOW_TYPES = {
    "string": DataType.string,
    "large_string": DataType.string,
    "bool": DataType.boolean,
    "int32": DataType.integer,
    "int64": DataType.long,
    "float32": DataType.float,
    "float64": DataType.double,
}


class SplitDataset(MetaDataset):
    """One split of the data as MLflow sees it: where it is from, the manifest's digest, the
    columns a row holds and a profile (rows and rows per class), shown in the UI's drawer."""

    def __init__(
        self,
        source: DatasetSource,
        name: str,
        digest: str,
        schema: Schema,
        profile: dict[str, Any],
    ):
        self._profile = profile
        super().__init__(source, name=name, digest=digest, schema=schema)

    @property
    def profile(self) -> dict[str, Any]:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def dataset_source(manifest: dict[str, Any]) -> DatasetSource:
    """What the data is: a Hub repository at its revision, or a local folder (a Hub replica
    or an audiofolder) by the path the config gives; never a made-up URL."""
    path = str(manifest["path"])
    if manifest["source"] == "hub" and not Path(path).is_dir():
        return HuggingFaceDatasetSource(
            path=path,
            config_name=manifest.get("config_name"),
            split=manifest.get("split_name"),
            revision=manifest.get("revision"),
        )
    return LocalArtifactDatasetSource(path)


def dataset_schema(features: Features) -> Schema:
    """``audio`` (the clip's file bytes), ``label`` (its class name) and the columns the
    features keep beside the model's input (``path``, ``speaker``, ``duration_s``...)."""
    kept = [
        ColSpec(_MLFLOW_TYPES.get(feature.dtype, DataType.string), name)
        for name, feature in features.items()
        if isinstance(feature, Value) and name not in (AUDIO, LABEL)
    ]
    return Schema([ColSpec(DataType.binary, AUDIO), ColSpec(DataType.string, LABEL), *kept])


def split_datasets(manifest: dict[str, Any], features: Features) -> dict[str, SplitDataset]:
    """The train, validation and test splits as MLflow datasets, named
    ``<path>[-<config>]/<split>``."""
    base = "-".join(str(p) for p in (manifest["path"], manifest.get("config_name")) if p)
    source = dataset_source(manifest)
    schema = dataset_schema(features)
    return {
        split: SplitDataset(
            source,
            name=f"{base}/{split}",
            digest=manifest["digest"][:DIGEST_CHARS],
            schema=schema,
            profile={
                "data.digest": manifest["digest"],
                "data.source": manifest["source"],
                "num_rows": manifest["num_rows"][split],
                "class_counts": manifest["class_counts"][split],
                "num_rows_per_split": manifest["num_rows"],
            },
        )
        for split in SPLIT_CONTEXTS
    }


def log_datasets(manifest: dict[str, Any], features_dir: Path) -> None:
    """Log train, validation and test as the active run's inputs, each with its context.

    The columns come from the features' dataset info (``features_dir/train``; no split's data
    is opened), the rest from the manifest.
    """
    features = DatasetInfo.from_directory(str(Path(features_dir) / "train")).features
    for split, dataset in split_datasets(manifest, features).items():
        mlflow.log_input(dataset, context=split)


def logged_datasets(run_id: str) -> dict[str, DatasetEntity]:
    """The run's logged inputs by context (``train``, ``validation``, ``test``): what its
    validation and test metrics are logged against."""
    inputs = MlflowClient().get_run(run_id).inputs
    found = {}
    for logged in inputs.dataset_inputs if inputs else []:
        for tag in logged.tags:
            if tag.key == MLFLOW_DATASET_CONTEXT:
                found[tag.value] = logged.dataset
    return found


def model_digest(model_dir: Path) -> str:
    """sha256 over a model directory's weight files (``*.safetensors``): the model's identity.

    Logged as the run's tag ``model.sha256``, it maps any copy of the directory to its run.
    """
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {model_dir}")
    h = hashlib.sha256()
    for file in files:
        h.update(f"{file.name}\0".encode())
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def log_lineage(
    run_id: str,
    stages: tuple[str, ...],
    *,
    tag_stages: tuple[str, ...] = (),
    lock_file: Path = Path("dvc.lock"),
) -> None:
    """Log ``dvc.lock`` with the run (artifact ``lineage/dvc.lock``): the locked ``stages``'
    deps, outs and params, with their DVC hashes.

    ``dvc repro`` locks each stage as soon as it ends, so while a stage runs the lock holds the
    stages before it, fresh, and stale entries for it and the stages after it: only ``stages``
    are kept. ``train`` logs the data stages; ``evaluate`` logs them again with ``train`` (its
    model and code hashes), tagging ``tag_stages``' outputs.
    """
    if not lock_file.is_file():
        return

    # DVC's own YAML 1.2 round trip: PyYAML would read `mixed_precision: no` as false.
    lock = loads_yaml(lock_file.read_text()) or {}
    lock["stages"] = {k: v for k, v in (lock.get("stages") or {}).items() if k in stages}
    client = MlflowClient()
    client.log_text(run_id, dumps_yaml(lock), LOCK_ARTIFACT)
    for key, value in tags.dvc_lock_tags(lock_file, tag_stages).items():
        client.set_tag(run_id, key, value)


def log_training_outputs(
    run_id: str,
    cfg: DictConfig,
    *,
    manifest: Path,
    train_log: Path,
    checkpoints: Path,
    label_names: list[str],
) -> None:
    """Artifacts of a finished training: data manifest, label maps, curve, checkpoints, the
    config (and its values too long for a param) and the model's digest.

    The model itself is logged (and registered) once it was scored on test, by the evaluate
    stage (:func:`audioclf.serving.log_pyfunc_model`).
    """
    client = MlflowClient()
    client.log_artifact(run_id, str(manifest), "data")
    client.log_artifact(run_id, str(train_log), "training")
    client.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), CONFIG_ARTIFACT)
    client.set_tag(run_id, tags.MODEL_DIGEST_TAG, model_digest(Path(cfg.paths.model)))
    log_lineage(run_id, data_stages(Path.cwd()))
    _, long_values = params.flat_params(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        labels = Path(tmp) / "label_maps.json"
        labels.write_text(json.dumps({"id2label": dict(enumerate(label_names))}, indent=2))
        client.log_artifact(run_id, str(labels), "config")
        if long_values:
            extra = Path(tmp) / "long_params.json"
            extra.write_text(json.dumps(long_values, indent=2))
            client.log_artifact(run_id, str(extra), "config")
    mode = cfg.tracking.log_checkpoints
    if mode not in ("best", "all", "none"):
        raise ValueError(f"tracking.log_checkpoints must be best|all|none, not {mode!r}")
    names = {"best": ["best"], "all": ["best", "last"], "none": []}[mode]
    for name in names:
        if (checkpoints / name).is_dir():
            client.log_artifacts(run_id, str(checkpoints / name), f"checkpoints/{name}")


def log_validation_summary(run_id: str, summary: dict[str, Any]) -> None:
    """The best validation figures as ``val_best/*`` metrics; how training ended as tags;
    what validation measures as ``validation.*`` tags (:func:`validation_tags`)."""
    client = MlflowClient()
    numbers = {k[len("best_") :]: v for k, v in summary.items() if k.startswith("best_")}
    client.log_batch(
        run_id,
        metrics=[metric(f"val_best/{k}", v) for k, v in numbers.items() if k != "epoch"],
        tags=[
            *(
                RunTag(f"train.{key}", str(summary.get(key)).lower())
                for key in ("best_epoch", "epochs_trained", "stopped_early", "pruned")
            ),
            *(RunTag(k, v) for k, v in validation_tags(summary.get("validation")).items()),
        ],
    )


def validation_tags(described: dict[str, Any] | None) -> dict[str, str]:
    """Whether validation holds speakers (groups) that train has heard: ``val_best/*`` then
    overstates accuracy on new speakers, and the runs table says so beside it."""
    if not described or not described.get("group_column"):
        return {"validation.group_column": "none"} if described else {}
    shared = described.get("shared_with_train")
    tags = {
        "validation.group_column": str(described["group_column"]),
        "validation.grouped_by": str(described.get("grouped_by")),
        "validation.groups": str(described.get("validation_groups")),
        "validation.shared_with_train": str(shared),
        "validation.shares_groups_with_train": str(bool(shared)).lower(),
    }
    if note := described.get("note"):
        tags["validation.note"] = str(note)
    return tags


def log_model_metrics(run_id: str, model_id: str) -> None:
    """The run's ``val_best/*`` and ``test/*`` figures as its logged model's, each on the run's
    input it was computed on (``validation``, ``test``): the Models tab and the model's page
    then say which data each number is on. MLflow keeps the dataset of model metrics only."""
    client = MlflowClient()
    on = logged_datasets(run_id)
    linked = []
    for key in client.get_run(run_id).data.metrics:
        split = {"val_best": "validation", "test": "test"}.get(key.split("/", 1)[0])
        if split is None:
            continue
        dataset = on.get(split)
        linked += [
            Metric(
                key,
                m.value,
                m.timestamp,  # the run's own entry: logging it again adds nothing to the run
                m.step,
                model_id=model_id,
                dataset_name=dataset.name if dataset else None,
                dataset_digest=dataset.digest if dataset else None,
                run_id=run_id,
            )
            for m in client.get_metric_history(run_id, key)
        ]
    if linked:
        client.log_batch(run_id, metrics=linked)


def has_logged_model(run_id: str) -> bool:
    """Whether the run has logged a model already (MLflow's LoggedModel: a run logs only the
    served one), so that evaluating the same run again registers no second version."""
    outputs = MlflowClient().get_run(run_id).outputs
    return bool(outputs and outputs.model_outputs)


def metric(key: str, value: float, step: int = 0) -> Any:
    """An MLflow metric entity stamped now (for ``log_batch``)."""
    return Metric(key, float(value), int(time.time() * 1000), step)
