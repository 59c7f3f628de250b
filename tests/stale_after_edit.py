"""Which stages an edit makes stale: the table a reader checks before touching a module.

``dvc repro`` reruns a stage when one of its deps changes; the deps are the code each stage
imports (tests/unit/test_stage_deps.py checks they cover it). This table says the converse:
editing one file of each module (a path under ``src/audioclf``) makes exactly these stages
stale, so an edit to the model reruns no data stage and an edit to serving or predict reruns no
training. tests/unit/test_stage_staleness.py checks it names every module;
tests/system/test_stage_staleness.py checks it with ``dvc status`` on a throwaway copy of the
working tree, one edit at a time.
"""

from __future__ import annotations

ALL = frozenset({"download", "resample", "featurize", "train", "evaluate"})
MODEL = frozenset({"train", "evaluate"})
NONE: frozenset[str] = frozenset()

STALE_AFTER_EDIT: dict[str, frozenset[str]] = {
    "__init__.py": ALL,
    "config.py": ALL,
    "stages/__init__.py": ALL,
    "stages/download.py": {"download"},
    "stages/resample.py": {"resample"},
    "stages/featurize.py": {"featurize"},
    "stages/train.py": {"train"},
    "launch.py": {"train"},
    "stages/evaluate.py": {"evaluate"},
    "data/__init__.py": ALL,
    "data/columns.py": ALL,
    "data/sources.py": {"download"},
    "data/split.py": {"download"},
    "data/manifest.py": {"download"},
    "data/validate.py": {"download"},
    "data/audio.py": ALL,
    "data/store.py": ALL,
    "data/features.py": {"featurize", "train"},
    "models/__init__.py": {"featurize", "train", "evaluate"},
    "models/extractor.py": {"featurize", "train"},
    "models/build.py": {"train"},
    "models/logmel_cnn.py": MODEL,
    "models/saved.py": MODEL,
    "training/__init__.py": {"train"},
    "training/loop.py": {"train"},
    "training/data.py": {"train"},
    "training/checkpoints.py": {"train"},
    "training/report.py": {"train"},
    "training/pruning.py": {"train"},
    "metrics/__init__.py": MODEL,
    "threads.py": MODEL,
    "devices.py": MODEL,
    "environment.py": {"train"},
    "dvc_stages.py": MODEL,
    "classifier.py": {"evaluate"},
    "windows.py": {"evaluate"},
    "evaluation.py": {"evaluate"},
    "serving.py": {"evaluate"},
    "registry.py": {"evaluate"},
    "model_store.py": {"evaluate"},
    "tracking/__init__.py": MODEL,
    "tracking/store.py": MODEL,
    "tracking/params.py": MODEL,
    "tracking/train_run.py": {"train"},
    "tracking/tags.py": MODEL,
    "tracking/artifacts.py": MODEL,
    "tracking/outcome.py": MODEL,
    "tracking/system_metrics.py": MODEL,
    "predict.py": NONE,
    "cli.py": NONE,
    "testing.py": NONE,
    "metrics/accuracy/accuracy.py": MODEL,
    "metrics/precision_recall_f1/precision_recall_f1.py": MODEL,
    "lineage/__init__.py": NONE,
    "lineage/collect.py": NONE,
    "lineage/records.py": NONE,
    "lineage/render.py": NONE,
    "lineage/resolve.py": NONE,
    "lineage/verify.py": NONE,
    "hparams_search/__init__.py": NONE,
    "hparams_search/spec.py": NONE,
    "hparams_search/runs.py": NONE,
    "hparams_search/worker.py": NONE,
}
