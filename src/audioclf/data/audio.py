"""Decode and resample audio without FFmpeg or torchcodec: soundfile decodes, soxr resamples."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SILENCE_PEAK = 1e-4
PCM16_SCALE = 32768.0
STORAGE_DTYPES = ("int16", "float32")


class AudioError(ValueError):
    """An audio item cannot be used: unreadable, corrupt, empty or silent."""


def decode(source: bytes | str | Path) -> tuple[np.ndarray, int]:
    """Decode WAV/FLAC/OGG/MP3 bytes or a file to mono float32 and its sampling rate."""
    handle = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        data, rate = sf.read(handle, dtype="float32", always_2d=True)
    except sf.LibsndfileError as err:
        # str(err) names the file object, for bytes a memory address that would make the
        # manifest's list of skipped items differ from run to run: keep libsndfile's reason.
        raise AudioError(f"unreadable or corrupt audio ({err.error_string})") from err
    except (RuntimeError, TypeError, ValueError) as err:
        raise AudioError(f"unreadable or corrupt audio ({err})") from err
    return data.mean(axis=1, dtype=np.float32), int(rate)


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample with soxr's high-quality filter; a no-op when the rates already match."""
    if rate == target_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    return soxr.resample(samples, rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def problem(samples: np.ndarray) -> str | None:
    """Why a decoded clip is unusable (empty or silent), or None when it is fine."""
    if samples.size == 0:
        return "empty audio (no samples)"
    if not np.isfinite(samples).all():
        return "audio contains NaN or infinite samples"
    if float(np.abs(samples).max()) < SILENCE_PEAK:
        return "silent audio (peak below 1e-4)"
    return None


def load(source: bytes | str | Path, target_rate: int) -> np.ndarray:
    """Decode, check and resample one clip; raises AudioError naming the reason."""
    samples, rate = decode(source)
    reason = problem(samples)
    if reason:
        raise AudioError(reason)
    return resample(samples, rate, target_rate)


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 16-bit PCM (rounded, clipped): half the bytes of float32,
    and lossless for sources of 16 bits or fewer."""
    scaled = np.rint(np.asarray(samples, dtype=np.float32) * np.float32(PCM16_SCALE))
    return np.clip(scaled, -PCM16_SCALE, PCM16_SCALE - 1).astype(np.int16)


def as_float32(samples: np.ndarray) -> np.ndarray:
    """Stored samples as float32 in [-1, 1]: 16-bit PCM is scaled, float is passed through.

    Any integer array is taken for 16-bit PCM (what :func:`to_pcm16` stores): ``datasets``'
    numpy format widens stored int16 to int64 when it reads a row.
    """
    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        return samples.astype(np.float32) / np.float32(PCM16_SCALE)
    return samples.astype(np.float32, copy=False)


def storage_dtype(name: str) -> np.dtype:
    """``audio.storage_dtype`` as a numpy dtype; a clear error for anything else."""
    if name not in STORAGE_DTYPES:
        raise ValueError(f"audio.storage_dtype must be one of {list(STORAGE_DTYPES)}, not {name!r}")
    return np.dtype(name)
