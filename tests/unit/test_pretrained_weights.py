"""Pretrained weights: safetensors when a checkpoint has them, else ``pytorch_model.bin`` through
torch's weights-only loading (a pickle of anything else is refused, never run), and the record of
which file and which commit were loaded."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from omegaconf import DictConfig
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

from audioclf.config import ConfigError, compose_conf
from audioclf.models.build import build_model, pretrained_weights, weights_tags
from audioclf.models.extractor import build_feature_extractor
from audioclf.testing import mini_wav2vec2_encoder

LABELS = ["abroad", "balance", "freeze"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_checkpoint(folder: Path, encoder: Wav2Vec2Model, *, layout: str) -> Path:
    """``encoder`` saved as ``model.safetensors`` (``save_pretrained``) or, as older Hub
    repositories hold it, as a pickled state dict in ``pytorch_model.bin``; with its extractor."""
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "safetensors":
        encoder.save_pretrained(folder)
    else:
        encoder.config.save_pretrained(folder)
        torch.save(encoder.state_dict(), folder / "pytorch_model.bin")
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=False).save_pretrained(
        folder
    )
    return folder


def model_config(name_or_path: str, revision: str | None = None) -> DictConfig:
    cfg = compose_conf(
        [
            "model=wav2vec2_base",
            "train=wav2vec2_base",
            f"model.name_or_path={name_or_path}",
            f"model.revision={revision or 'null'}",
        ]
    )
    return cfg.model


def assert_loaded(model: torch.nn.Module, encoder: Wav2Vec2Model) -> None:
    """The classifier's encoder holds the checkpoint's weights, not a fresh initialisation."""
    loaded = model.wav2vec2.state_dict()
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(loaded[name], tensor), name


@pytest.mark.parametrize(
    ("layout", "weights_file"),
    [("safetensors", "model.safetensors"), ("pickle", "pytorch_model.bin")],
)
def test_both_layouts_build_and_say_which_file_they_loaded(
    tmp_path: Path, layout: str, weights_file: str
) -> None:
    encoder = mini_wav2vec2_encoder()
    folder = write_checkpoint(tmp_path / layout, encoder, layout=layout)
    cfg = model_config(str(folder), revision="main")  # a local folder has no revision
    model = build_model(cfg, LABELS)
    assert_loaded(model, encoder)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert weights_tags(cfg) == {"model.weights_file": weights_file}
    extractor = build_feature_extractor(cfg)
    assert extractor.sampling_rate == 16000 and not extractor.return_attention_mask


def test_safetensors_win_over_the_pickle(tmp_path: Path) -> None:
    encoder = mini_wav2vec2_encoder()
    folder = write_checkpoint(tmp_path / "both", encoder, layout="safetensors")
    torch.save({"unused": torch.zeros(1)}, folder / "pytorch_model.bin")
    cfg = model_config(str(folder))
    assert_loaded(build_model(cfg, LABELS), encoder)
    assert weights_tags(cfg) == {"model.weights_file": "model.safetensors"}


class Payload:
    """What a hostile pickle carries: unpickling it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))


def test_a_pickle_holding_more_than_tensors_is_refused_unrun(tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "hostile", mini_wav2vec2_encoder(), layout="pickle")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    marker = tmp_path / "payload-ran"
    torch.save({**state, "payload": Payload(marker)}, folder / "pytorch_model.bin")
    cfg = model_config(str(folder))
    with pytest.raises(ConfigError, match=r"pytorch_model\.bin holds more than tensors"):
        build_model(cfg, LABELS)
    assert not marker.exists()


def test_a_folder_without_weights_and_a_missing_folder_name_the_key(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"model\.name_or_path=.*holds none of"):
        build_model(model_config(str(empty)), LABELS)
    with pytest.raises(ConfigError, match=r"model\.name_or_path=.*no such folder"):
        build_model(model_config(str(tmp_path / "missing")), LABELS)


def test_a_hub_checkpoint_records_the_commit_its_branch_resolved_to(tmp_path: Path) -> None:
    """A repository in the Hub cache (offline, as the tests run) holding only the pickle, as
    many older ones do: built through weights-only loading, its branch recorded as the commit
    it pointed at."""
    repo_id = f"audioclf-tests/pickle-only-{uuid.uuid4().hex[:8]}"
    storage = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    encoder = mini_wav2vec2_encoder()
    write_checkpoint(storage / "snapshots" / COMMIT, encoder, layout="pickle")
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(COMMIT)
    cfg = model_config(repo_id, revision="main")
    weights = pretrained_weights(cfg)
    assert weights is not None and weights.folder.name == COMMIT
    assert_loaded(build_model(cfg, LABELS), encoder)
    assert weights_tags(cfg) == {
        "model.weights_file": "pytorch_model.bin",
        "model.revision": COMMIT,
    }
    assert build_feature_extractor(cfg).sampling_rate == 16000
