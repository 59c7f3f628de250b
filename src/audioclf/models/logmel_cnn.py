"""A small 2-D CNN over per-clip-normalized log-mel features, as a transformers model.

Why it exists: a tiny wav2vec2 trained from scratch on a few speakers reads the raw waveform and
memorizes who is speaking instead of what is said. A log-mel spectrogram puts pitch and formants
on a frequency axis, and 3x3 convolutions with max-pooling over that axis respond to a pattern
wherever it sits, so a formant trajectory shifted up or down by another speaker's vocal tract still
matches. That frequency-translation tolerance is what carries across speakers; per-clip
normalization removes loudness and channel gain.

The model takes the raw waveform (``input_values``, batch x samples, at ``config.sampling_rate``)
so transformers' own ``Wav2Vec2FeatureExtractor`` (``do_normalize=False``,
``return_attention_mask=True``) and the ``audio-classification`` pipeline work unchanged. The
log-mel front end has no learned weights: its window and mel filterbank are non-persistent
buffers rebuilt from the config, so a checkpoint holds only the convolutions, norms and head.

Padding never changes a clip's scores: the attention mask, downsampled to frames, restricts the
normalization statistics, zeroes padded frames before every convolution and pool, and restricts
the final average over time. An unpadded clip scores the same alone as inside a padded batch.

Importing this module makes ``model_type="audioclf_logmel_cnn"`` known to ``AutoConfig`` and
``AutoModelForAudioClassification`` (:func:`register_auto_classes`, idempotent), so ``import
audioclf.models.logmel_cnn`` is all that ``from_pretrained`` and ``pipeline()`` need.

One file of ~430 lines, as transformers keeps each of its models (configuration, front end,
encoder, head): a reader sees the whole architecture in one place, and every part of it changes
the same stages (train and evaluate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import (
    AutoConfig,
    AutoModelForAudioClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.audio_utils import mel_filter_bank
from transformers.modeling_outputs import SequenceClassifierOutput

try:  # transformers >= 5: init functions that skip tensors already loaded from a checkpoint
    from transformers import initialization as _init
except ImportError:  # pragma: no cover - transformers 4.x initializes only missing modules
    from torch.nn import init as _init

MODEL_TYPE = "audioclf_logmel_cnn"
LOG_EPS = 1e-6
NORM_EPS = 1e-5


class LogMelCNNConfig(PretrainedConfig):
    """Front end, network and SpecAugment settings; defaults suit 8 kHz speech.

    Args:
        sampling_rate: rate of ``input_values`` in Hz.
        n_fft: FFT size in samples (256 = 32 ms at 8 kHz).
        win_length: Hann window length in samples (200 = 25 ms), at most ``n_fft``.
        hop_length: frame step in samples (80 = 10 ms).
        n_mels: number of mel bands.
        f_min: lowest mel edge in Hz.
        f_max: highest mel edge in Hz; ``None`` means ``sampling_rate / 2``.
        mel_scale: ``"htk"``, ``"slaney"`` or ``"kaldi"`` (see ``transformers.audio_utils``).
        top_db: floor each clip's log-mel at its loudest valid value minus this many dB, so
            the level of background silence (clean or noisy recording) matters less;
            ``None`` keeps only the ``log(mel + 1e-6)`` floor. 30 dB helped a held-out speaker
            recorded with much cleaner silence than the training speakers.
        channels: output channels of the conv blocks (conv3x3-BatchNorm-ReLU-maxpool2x2 each).
        freq_pooling: ``"mean"`` or ``"max"`` over the remaining mel axis.
        time_pooling: ``"mean"``, ``"max"`` or ``"meanmax"`` (their sum) over a clip's valid
            frames.
        pool_freq_first: pool over mel bins within each frame, then over time. Each frame then
            finds its pattern at whatever height a speaker's formants put it, where pooling
            time first compares each mel band's strongest moment.
        normalize_per_band: normalization statistics per mel band rather than over the whole
            log-mel, which removes a recording's spectral tilt; on one-word clips a band's mean
            is mostly the word's vowel, and held-out speakers fell to 0.62 (README, LOSO).
        active_db: normalization statistics come from the frames within this many dB of the
            clip's loudest (``None``: all frames), so the share of silence in a recording
            does not shift its features. 20 dB beat 10 dB on every held-out speaker of the
            development set (leave-one-speaker-out, 3 seeds): 10 dB also drops the quieter
            phones of a word from the statistics.
        dropout: dropout before the linear classifier.
        mask_time_prob: SpecAugment, about the fraction of a clip's frames masked (0 = off).
        mask_time_length: frames per time mask.
        mask_feature_prob: SpecAugment, about the fraction of mel bands masked (0 = off).
        mask_feature_length: mel bands per frequency mask.
        initializer_range: std of the classifier's normal init.
        **kwargs: ``PretrainedConfig`` arguments (``num_labels``, ``id2label``, ``label2id``...).
    """

    model_type = MODEL_TYPE

    def __init__(
        self,
        sampling_rate: int = 8000,
        n_fft: int = 256,
        win_length: int = 200,
        hop_length: int = 80,
        n_mels: int = 32,
        f_min: float = 20.0,
        f_max: float | None = None,
        mel_scale: str = "htk",
        top_db: float | None = 30.0,
        channels: Sequence[int] = (32, 64, 64, 128),
        freq_pooling: str = "max",
        time_pooling: str = "max",
        pool_freq_first: bool = False,
        normalize_per_band: bool = False,
        active_db: float | None = 20.0,
        dropout: float = 0.2,
        mask_time_prob: float = 0.0,
        mask_time_length: int = 10,
        mask_feature_prob: float = 0.0,
        mask_feature_length: int = 8,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        if win_length > n_fft:
            raise ValueError(f"win_length ({win_length}) must not exceed n_fft ({n_fft})")
        if not channels:
            raise ValueError("channels must name at least one conv block")
        if freq_pooling not in ("mean", "max"):
            raise ValueError(f"freq_pooling must be 'mean' or 'max', not {freq_pooling!r}")
        if time_pooling not in ("mean", "max", "meanmax"):
            raise ValueError(
                f"time_pooling must be 'mean', 'max' or 'meanmax', not {time_pooling!r}"
            )
        self.sampling_rate = int(sampling_rate)
        self.n_fft = int(n_fft)
        self.win_length = int(win_length)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.f_min = float(f_min)
        self.f_max = None if f_max is None else float(f_max)
        self.mel_scale = mel_scale
        self.top_db = None if top_db is None else float(top_db)
        self.channels = [int(c) for c in channels]
        self.freq_pooling = freq_pooling
        self.time_pooling = time_pooling
        self.pool_freq_first = bool(pool_freq_first)
        self.normalize_per_band = bool(normalize_per_band)
        self.active_db = None if active_db is None else float(active_db)
        self.dropout = float(dropout)
        self.mask_time_prob = float(mask_time_prob)
        self.mask_time_length = int(mask_time_length)
        self.mask_feature_prob = float(mask_feature_prob)
        self.mask_feature_length = int(mask_feature_length)
        self.initializer_range = float(initializer_range)
        super().__init__(**kwargs)


class LogMelFrontEnd(nn.Module):
    """Waveform (batch, samples) to log-mel (batch, n_mels, frames), always in float32.

    Frames are centred with zero padding, so frame ``i`` is valid for a clip of ``n`` samples
    when ``i <= n // hop_length``: the same frames as for that clip alone, zero-padded.
    """

    def __init__(self, config: LogMelCNNConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("window", self._window(), persistent=False)
        self.register_buffer("mel_filters", self._mel_filters(), persistent=False)

    def _window(self) -> torch.Tensor:
        return torch.hann_window(self.config.win_length, periodic=True, dtype=torch.float32)

    def _mel_filters(self) -> torch.Tensor:
        cfg = self.config
        f_max = cfg.f_max if cfg.f_max is not None else cfg.sampling_rate / 2
        filters = mel_filter_bank(
            num_frequency_bins=cfg.n_fft // 2 + 1,
            num_mel_filters=cfg.n_mels,
            min_frequency=cfg.f_min,
            max_frequency=f_max,
            sampling_rate=cfg.sampling_rate,
            norm=None,
            mel_scale=cfg.mel_scale,
        )
        return torch.from_numpy(filters).to(torch.float32)  # (n_fft // 2 + 1, n_mels)

    @torch.no_grad()
    def reset_buffers(self) -> None:
        """Refill the buffers: from_pretrained leaves non-persistent buffers uninitialized."""
        _copy(self.window, self._window())
        _copy(self.mel_filters, self._mel_filters())

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths // self.config.hop_length + 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            spec = torch.stft(
                waveform.float(),
                n_fft=cfg.n_fft,
                hop_length=cfg.hop_length,
                win_length=cfg.win_length,
                window=self.window.float(),
                center=True,
                pad_mode="constant",
                return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()  # (batch, freq, frames)
            mel = torch.matmul(self.mel_filters.float().T, power)
            return torch.log(mel + LOG_EPS)


class LogMelCNNBlock(nn.Module):
    """conv3x3 - BatchNorm - ReLU - (zero padded frames) - maxpool2x2 (ceil mode)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(
        self, hidden: torch.Tensor, frame_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = F.relu(self.norm(self.conv(hidden)))
        # ReLU output is >= 0, so zeros in padded frames never win a max over valid frames, and
        # the next conv sees the same zeros as its own padding would give a clip alone.
        hidden = hidden * frame_mask[:, None, None, :].to(hidden.dtype)
        hidden = F.max_pool2d(hidden, kernel_size=2, ceil_mode=True)
        frame_mask = F.max_pool1d(frame_mask[:, None, :], kernel_size=2, ceil_mode=True)[:, 0]
        return hidden, frame_mask


class LogMelCNNEncoder(nn.Module):
    """Front end, per-clip normalization, SpecAugment (training only) and the conv blocks."""

    def __init__(self, config: LogMelCNNConfig) -> None:
        super().__init__()
        self.config = config
        self.frontend = LogMelFrontEnd(config)
        widths = [1, *config.channels]
        self.blocks = nn.ModuleList(LogMelCNNBlock(c_in, c_out) for c_in, c_out in pairwise(widths))

    def frame_mask(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None, n_frames: int
    ) -> torch.Tensor:
        """(batch, frames) float mask of the frames that lie within each clip's real samples."""
        batch, samples = input_values.shape
        if attention_mask is None:
            lengths = torch.full((batch,), samples, device=input_values.device)
        else:
            lengths = attention_mask.long().sum(-1)
        valid = self.frontend.num_frames(lengths)
        frames = torch.arange(n_frames, device=input_values.device)
        return (frames[None, :] < valid[:, None]).float()

    def floor(self, logmel: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Clamp at ``top_db`` below the clip's maximum over its valid frames."""
        valid = frame_mask[:, None, :] > 0
        peak = logmel.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
        return torch.maximum(logmel, peak - self.config.top_db * math.log(10.0) / 10.0)

    def active_frames(self, logmel: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """The valid frames within ``active_db`` of the clip's loudest (energy over mel bins)."""
        energy = torch.logsumexp(logmel, dim=1).masked_fill(frame_mask == 0, float("-inf"))
        peak = energy.amax(dim=-1, keepdim=True)
        threshold = peak - self.config.active_db * math.log(10.0) / 10.0
        return frame_mask * (energy >= threshold).to(frame_mask.dtype)

    def normalize(
        self, logmel: torch.Tensor, frame_mask: torch.Tensor, stats_mask: torch.Tensor
    ) -> torch.Tensor:
        """Zero mean, unit variance over each clip's ``stats_mask`` frames (per mel band or
        over all bands)."""
        stats = stats_mask[:, None, :]
        dims = (2,) if self.config.normalize_per_band else (1, 2)
        bands = 1 if self.config.normalize_per_band else logmel.shape[1]
        count = stats.sum(dim=dims, keepdim=True) * bands
        mean = (logmel * stats).sum(dim=dims, keepdim=True) / count
        var = ((logmel - mean).square() * stats).sum(dim=dims, keepdim=True) / count
        return (logmel - mean) / torch.sqrt(var + NORM_EPS) * frame_mask[:, None, :]

    def spec_augment(self, features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Zero random time spans and mel bands (the normalized mean), torch's global RNG."""
        cfg = self.config
        batch, n_mels, n_frames = features.shape
        keep = torch.ones_like(features)
        if cfg.mask_time_prob > 0 and cfg.mask_time_length > 0:
            lengths = frame_mask.sum(-1)
            spans = _random_spans(
                lengths, n_frames, cfg.mask_time_prob, cfg.mask_time_length, features.device
            )
            keep = keep * (~spans)[:, None, :].to(keep.dtype)
        if cfg.mask_feature_prob > 0 and cfg.mask_feature_length > 0:
            lengths = torch.full((batch,), float(n_mels), device=features.device)
            spans = _random_spans(
                lengths, n_mels, cfg.mask_feature_prob, cfg.mask_feature_length, features.device
            )
            keep = keep * (~spans)[:, :, None].to(keep.dtype)
        return features * keep

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Final feature map (batch, C, F', T'), its frame mask (batch, T'), hidden states."""
        if input_values.dim() != 2:
            raise ValueError(f"input_values must be (batch, samples), got {input_values.shape}")
        waveform = input_values.float()
        if attention_mask is not None:
            waveform = waveform * attention_mask.to(waveform.dtype)
        logmel = self.frontend(waveform)
        frame_mask = self.frame_mask(input_values, attention_mask, logmel.shape[-1])
        if self.config.top_db is not None:
            logmel = self.floor(logmel, frame_mask)
        stats_mask = frame_mask
        if self.config.active_db is not None:
            stats_mask = self.active_frames(logmel, frame_mask)
        features = self.normalize(logmel, frame_mask, stats_mask)
        if self.training and (self.config.mask_time_prob > 0 or self.config.mask_feature_prob > 0):
            features = self.spec_augment(features, frame_mask)
        hidden = features[:, None].to(self.blocks[0].conv.weight.dtype)
        states: list[torch.Tensor] = [hidden]
        for block in self.blocks:
            hidden, frame_mask = block(hidden, frame_mask)
            states.append(hidden)
        return hidden, frame_mask, tuple(states) if output_hidden_states else None


class LogMelCNNPreTrainedModel(PreTrainedModel):
    config_class = LogMelCNNConfig
    base_model_prefix = "logmel_cnn"
    main_input_name = "input_values"
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            _init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                _init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            _init.ones_(module.weight)
            _init.zeros_(module.bias)
            if module.running_mean is not None:
                _init.zeros_(module.running_mean)
                _init.ones_(module.running_var)
                _init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.Linear):
            _init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                _init.zeros_(module.bias)
        elif isinstance(module, LogMelFrontEnd):
            module.reset_buffers()


class LogMelCNNForAudioClassification(LogMelCNNPreTrainedModel):
    """Log-mel 2-D CNN, masked pooling over time and mel bins, dropout and a linear head."""

    def __init__(self, config: LogMelCNNConfig) -> None:
        super().__init__(config)
        self.logmel_cnn = LogMelCNNEncoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.channels[-1], config.num_labels)
        self.post_init()

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple[Any, ...]:
        """Logits for raw waveforms; ``attention_mask`` is 1 on real samples (right padding).

        Returns:
            ``SequenceClassifierOutput`` with ``loss`` (cross-entropy, when ``labels`` are
            given), ``logits`` (batch, num_labels) and, when asked, ``hidden_states``: the
            normalized log-mel (batch, 1, n_mels, frames) and each block's output.
        """
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.output_hidden_states)
        if return_dict is None:
            return_dict = bool(self.config.return_dict)
        hidden, frame_mask, states = self.logmel_cnn(
            input_values, attention_mask, output_hidden_states=output_hidden_states
        )
        if self.config.pool_freq_first:
            pooled = self.pool_time(self.pool_freq(hidden, -2), frame_mask[:, None, :])
        else:
            pooled = self.pool_freq(self.pool_time(hidden, frame_mask[:, None, None, :]), -1)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float(), labels.to(logits.device).long())
        if not return_dict:
            output: tuple[Any, ...] = (logits,) if states is None else (logits, states)
            return (loss, *output) if loss is not None else output
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=states)

    def pool_freq(self, hidden: torch.Tensor, dim: int) -> torch.Tensor:
        return hidden.amax(dim) if self.config.freq_pooling == "max" else hidden.mean(dim)

    def pool_time(self, hidden: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Masked pooling over the last (time) axis; ``frame_mask`` broadcasts to ``hidden``."""
        mask = frame_mask.to(hidden.dtype)
        if self.config.time_pooling == "mean":
            return _masked_mean(hidden, mask)
        peak = hidden.masked_fill(mask == 0, float("-inf")).amax(-1)  # as strong despite silence
        if self.config.time_pooling == "max":
            return peak
        return peak + _masked_mean(hidden, mask)


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (hidden * mask).sum(-1) / mask.sum(-1)


def _copy(tensor: torch.Tensor, value: torch.Tensor) -> None:
    copy = getattr(_init, "copy_", None)
    if copy is not None:
        copy(tensor, value.to(tensor.device, tensor.dtype))
    else:  # pragma: no cover - transformers 4.x
        tensor.copy_(value.to(tensor.device, tensor.dtype))


def _random_spans(
    lengths: torch.Tensor, size: int, prob: float, span: int, device: torch.device
) -> torch.Tensor:
    """(batch, size) bool mask of random spans within each row's first ``lengths`` positions.

    About ``prob * length / span`` spans per row (stochastically rounded), starts uniform.
    """
    lengths = lengths.float()
    expected = prob * lengths / span
    counts = torch.floor(expected + torch.rand(expected.shape, device=device)).long()
    max_count = int(counts.max().item()) if counts.numel() else 0
    if max_count == 0:
        return torch.zeros(lengths.shape[0], size, dtype=torch.bool, device=device)
    room = (lengths - span + 1).clamp(min=1)  # a span may start anywhere it fits
    starts = torch.floor(torch.rand(lengths.shape[0], max_count, device=device) * room[:, None])
    used = torch.arange(max_count, device=device)[None, :] < counts[:, None]
    positions = torch.arange(size, device=device).float()[None, None, :]
    inside = (positions >= starts[..., None]) & (positions < starts[..., None] + span)
    inside &= positions < lengths[:, None, None]
    return (inside & used[..., None]).any(dim=1)


def register_auto_classes() -> None:
    """Make ``model_type="audioclf_logmel_cnn"`` loadable by the Auto classes (idempotent)."""
    AutoConfig.register(MODEL_TYPE, LogMelCNNConfig, exist_ok=True)
    AutoModelForAudioClassification.register(
        LogMelCNNConfig, LogMelCNNForAudioClassification, exist_ok=True
    )


register_auto_classes()


__all__ = [
    "LogMelCNNConfig",
    "LogMelCNNForAudioClassification",
    "LogMelCNNPreTrainedModel",
    "register_auto_classes",
]
