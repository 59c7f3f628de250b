"""The resample and featurize stages, and the determinism of the three data stages."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from datasets import ClassLabel

from audioclf.data.audio import as_float32
from audioclf.data.features import ModelInput
from audioclf.data.store import load_splits
from audioclf.models.extractor import build_feature_extractor
from audioclf.stages.download import download
from audioclf.stages.featurize import featurize
from audioclf.stages.resample import resample
from audioclf.testing import (
    FOLDER_DIR,
    HUB_CLASSES,
    HUB_DIR,
    HUB_OVERRIDES,
    Project,
    folder_items,
    hub_rows,
    make_project,
    write_hub_repo,
)

OUTPUTS = ("data/raw", "data/manifest.json", "data/resampled", "data/features")


def run_stages(project: Project, *overrides: str) -> None:
    cfg = project.cfg(*overrides)
    download(cfg)
    resample(cfg)
    featurize(cfg)


def decoded(folder: Path) -> dict[str, tuple[np.ndarray, int]]:
    """Each audiofolder file decoded as written: (frames, channels) float32 and its rate."""
    out = {}
    for item in folder_items():
        data, rate = sf.read(io.BytesIO((folder / item.file_name).read_bytes()), dtype="float32")
        out[item.file_name] = (data.reshape(len(data), -1), rate)
    return out


PCM16_STEP = 1 / 32768


def test_resample_gives_16_bit_mono_at_the_configured_rate(folder_project: Project) -> None:
    cfg = folder_project.cfg("audio.sampling_rate=16000")
    download(cfg)
    resample(cfg)
    originals = decoded(Path(FOLDER_DIR))
    assert any(frames.shape[1] == 2 for frames, _ in originals.values())  # stereo inputs
    out = load_splits("data/resampled", "resample")
    assert sum(len(ds) for ds in out.values()) == len(originals)
    for ds in out.values():
        assert "audio" not in ds.column_names  # no bytes carried on
        assert {"array", "duration_s", "intent_class", "speaker"} <= set(ds.column_names)
        assert ds.features["array"].feature.dtype == "int16"  # 2 bytes a sample on disk
        for row in ds.with_format("numpy"):
            frames, rate = originals[row["path"]]
            array = as_float32(row["array"])
            assert rate == 8000
            assert array.dtype == np.float32 and array.ndim == 1
            assert array.size == 2 * frames.shape[0]  # 8 kHz -> 16 kHz
            assert row["duration_s"] == pytest.approx(frames.shape[0] / 8000)
            # Mono is the mean of the channels, then resampled, then rounded to 16 bits.
            expected = soxr.resample(frames.mean(axis=1), 8000, 16000, quality="HQ")
            np.testing.assert_allclose(array, np.clip(expected, -1, 1), atol=PCM16_STEP)


def test_resample_keeps_float32_when_asked(folder_project: Project) -> None:
    cfg = folder_project.cfg("audio.sampling_rate=16000", "audio.storage_dtype=float32")
    download(cfg)
    resample(cfg)
    originals = decoded(Path(FOLDER_DIR))
    for ds in load_splits("data/resampled", "resample").values():
        assert ds.features["array"].feature.dtype == "float32"
        for row in ds.with_format("numpy"):
            frames, _ = originals[row["path"]]
            expected = soxr.resample(frames.mean(axis=1), 8000, 16000, quality="HQ")
            np.testing.assert_allclose(row["array"], expected, atol=1e-6)


def test_resample_names_a_bad_storage_dtype(folder_project: Project) -> None:
    cfg = folder_project.cfg("audio.storage_dtype=int8")
    download(cfg)
    with pytest.raises(ValueError, match=r"audio\.storage_dtype must be one of"):
        resample(cfg)


def test_resample_at_the_source_rate_keeps_the_samples(folder_project: Project) -> None:
    cfg = folder_project.cfg()
    assert cfg.audio.sampling_rate == 8000
    download(cfg)
    resample(cfg)
    originals = decoded(Path(FOLDER_DIR))
    for ds in load_splits("data/resampled", "resample").values():
        for row in ds.with_format("numpy"):
            frames, _ = originals[row["path"]]
            mono = frames.mean(axis=1)
            np.testing.assert_allclose(as_float32(row["array"]), mono, atol=PCM16_STEP / 2)


@pytest.mark.parametrize("model", ["logmel_cnn", "tiny"])
def test_featurize_applies_the_extractor_to_whole_clips_with_class_labels(
    folder_project: Project, model: str
) -> None:
    """Both extractors only scale the waveform: featurize stores the clip itself (no float
    copy) and the extractor runs when a row is read. The log-mel CNN's passes the waveform
    through (the model computes its features); the tiny wav2vec2's normalizes each clip to
    zero mean and unit variance."""
    folder_project.write_params(*folder_project.overrides, f"model={model}", f"train={model}")
    run_stages(folder_project)
    resampled = load_splits("data/resampled", "resample")
    features = load_splits("data/features", "featurize")
    names = ["no", "stop", "yes"]
    extractor = build_feature_extractor(folder_project.cfg().model)
    model_input = ModelInput(extractor)
    lengths = []
    for split, ds in features.items():
        assert isinstance(ds.features["label"], ClassLabel)
        assert ds.features["label"].names == names
        assert set(ds.column_names) == {"input_values", "label", "path", "duration_s", "speaker"}
        assert list(ds["path"]) == list(resampled[split]["path"])
        for row, source in zip(
            ds.with_format("numpy"), resampled[split].with_format("numpy"), strict=True
        ):
            np.testing.assert_array_equal(row["input_values"], source["array"])
            assert ds.features["input_values"].feature.dtype == "int16"
            values = model_input(row["input_values"])
            assert values.dtype == np.float32
            assert values.size == source["array"].size  # the whole clip
            direct = extractor(as_float32(source["array"]), sampling_rate=8000)["input_values"][0]
            np.testing.assert_array_equal(values, direct)  # as if the output had been stored
            if model == "tiny":
                assert abs(float(values.mean())) < 1e-3
                assert float(values.std()) == pytest.approx(1.0, abs=1e-2)
            else:
                np.testing.assert_array_equal(values, as_float32(source["array"]))
            lengths.append(values.size)
    # The 1.5 s clips are kept whole, not cut to a second.
    assert max(lengths) == 12000


def test_featurize_caps_clips_at_max_duration(hub_project: Project) -> None:
    run_stages(hub_project, "audio.max_duration_s=0.35")
    resampled = load_splits("data/resampled", "resample")
    features = load_splits("data/features", "featurize")
    cap = int(0.35 * 8000)
    sizes = set()
    for split, ds in features.items():
        assert ds.features["label"].names == list(HUB_CLASSES)
        for row, source in zip(ds["input_values"], resampled[split]["array"], strict=True):
            assert len(row) == min(len(source), cap)
            sizes.add(len(source))
    assert min(sizes) < cap < max(sizes)  # some clips are shorter, some are cut


def test_stages_name_the_missing_input(project: Project) -> None:
    project.write_params()
    with pytest.raises(FileNotFoundError, match="run the download stage first"):
        resample(project.cfg())
    with pytest.raises(FileNotFoundError, match="run the resample stage first"):
        featurize(project.cfg())


def test_data_stages_are_deterministic(
    tmp_path: Path, hub_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Several worker processes, as in params.yaml, and an audiofolder besides the Hub layout.
    run_stages(hub_project, "audio.num_proc=2")
    first = hub_project.hashes(*OUTPUTS)
    run_stages(hub_project, "audio.num_proc=2")
    assert hub_project.hashes(*OUTPUTS) == first

    # Another checkout of the same data elsewhere gives the same bytes.
    other = make_project(tmp_path / "elsewhere")
    write_hub_repo(other.root / HUB_DIR, hub_rows())
    other.write_params(*HUB_OVERRIDES)
    monkeypatch.chdir(other.root)
    run_stages(other, "audio.num_proc=1")
    assert other.hashes(*OUTPUTS) == first


def test_audiofolder_stages_are_deterministic(folder_project: Project) -> None:
    run_stages(folder_project)
    first = folder_project.hashes(*OUTPUTS)
    for output in OUTPUTS:
        path = Path(output)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    run_stages(folder_project)
    assert folder_project.hashes(*OUTPUTS) == first
