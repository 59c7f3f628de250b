"""The model as an MLflow pyfunc: audio in (bytes, base64 or an array with its rate), labels out.

The evaluate stage logs ``models/final`` with :func:`log_pyfunc_model` and registers it
(``tracking.registered_model_name``). Serve a registered version over HTTP with

    mlflow models serve -m models:/audioclf-intent@ALIAS --env-manager local -p 5001

``--env-manager local`` uses the current environment (where ``audioclf`` is installed): nothing
is downloaded and no pip environment is built. Request rows (``dataframe_split``,
``dataframe_records`` or ``inputs``) carry either

- ``audio``: a WAV/FLAC/OGG/MP3 file as base64 text (JSON) or raw bytes (in Python), or
- ``array`` (mono ``(frames,)`` or ``(frames, channels)`` float samples) and ``sampling_rate``.

Params ``top_k`` (default 5) and ``batch_size`` (default 8). Each row of the answer has the best
``label``, its ``score`` and ``top_k``, the list of ``{"label", "score"}``, best first.

Clips longer than the model's window are scored as ``audioclf predict`` scores them: windows of
``window_s`` every ``hop_s``, their probabilities averaged (:mod:`audioclf.windows`). Params
``window_s`` (default: the training clip length the model folder records; 0: whole clips),
``hop_s`` (default: half the window) and ``segments`` (default false: when true, each answer row
also has ``segments``, every window's ``{"start_s", "end_s", "label", "score"}``). The request
holds the whole clip in memory anyway, so arrays are windowed in memory, not streamed.
"""

from __future__ import annotations

import base64
import binascii
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ParamSchema, ParamSpec

from audioclf.data.audio import AudioError, decode
from audioclf.model_store import ARTIFACT
from audioclf.windows import WindowedClassifier, WindowError

DEFAULT_TOP_K = 5
DEFAULT_BATCH_SIZE = 8
# What loading and running the model needs besides audioclf itself, pinned to what logged it.
REQUIREMENTS = ("mlflow", "torch", "transformers", "numpy", "pandas", "soundfile", "soxr")


def _bad_request(message: str) -> Exception:
    """An error the scoring server answers with HTTP 400 and ``message``."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _records(model_input: Any) -> list[dict[str, Any]]:
    """The request as a list of row dicts, whatever shape MLflow parsed it into."""
    if isinstance(model_input, pd.DataFrame):
        return model_input.to_dict(orient="records")
    if isinstance(model_input, bytes | bytearray | str):
        return [{"audio": model_input}]
    if isinstance(model_input, dict):
        columns = {k: v for k, v in model_input.items() if k in ("audio", "array", "sampling_rate")}
        # Columns ({"audio": [a, b]}) or one record ({"audio": a} / {"array": [...], ...}).
        if "audio" in columns and isinstance(columns["audio"], list | tuple | np.ndarray):
            return pd.DataFrame(columns).to_dict(orient="records")
        if "sampling_rate" in columns and np.ndim(columns["sampling_rate"]) == 1:
            return pd.DataFrame({k: list(v) for k, v in columns.items()}).to_dict("records")
        return [columns]
    if isinstance(model_input, list | tuple):
        return [r if isinstance(r, dict) else {"audio": r} for r in model_input]
    raise _bad_request(
        f"unsupported input {type(model_input).__name__}: send rows with 'audio' (base64) "
        "or 'array' + 'sampling_rate'"
    )


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float):
        return not np.isnan(value)
    return True


def _clip(row: dict[str, Any], n: int) -> tuple[np.ndarray, int]:
    """One row as ``(samples, sampling_rate)``; errors name the row."""
    audio = row.get("audio")
    if _present(audio):
        if isinstance(audio, str):
            try:
                audio = base64.b64decode(audio, validate=True)
            except (binascii.Error, ValueError) as err:
                raise _bad_request(f"row {n}: 'audio' is not valid base64 ({err})") from err
        if not isinstance(audio, bytes | bytearray):
            raise _bad_request(f"row {n}: 'audio' must be bytes or base64 text")
        try:
            return decode(bytes(audio))
        except AudioError as err:
            raise _bad_request(f"row {n}: {err}") from err
    array, rate = row.get("array"), row.get("sampling_rate")
    if array is None or not _present(rate) or np.ndim(array) == 0:
        raise _bad_request(f"row {n}: give 'audio' (base64 file) or 'array' and 'sampling_rate'")
    try:
        samples = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise _bad_request(f"row {n}: 'array' is not an array of numbers ({err})") from err
    return samples, int(rate)


class AudioClassifierModel(mlflow.pyfunc.PythonModel):
    """Rows with ``audio`` (raw bytes or base64 text) or ``array`` + ``sampling_rate``."""

    def load_context(self, context: Any) -> None:
        self.classifier = WindowedClassifier(Path(context.artifacts[ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None):
        # MLflow validates nothing for a DataFrame hint; dicts and lists are accepted too.
        params = params or {}
        top_k = int(params.get("top_k") or DEFAULT_TOP_K)
        batch_size = int(params.get("batch_size") or DEFAULT_BATCH_SIZE)
        segments = bool(params.get("segments") or False)
        try:
            window = self.classifier.window(params.get("window_s"), params.get("hop_s"))
        except WindowError as err:
            raise _bad_request(str(err)) from err
        clips = [_clip(row, n) for n, row in enumerate(_records(model_input))]
        try:
            scored = self.classifier.score(clips, window, batch_size, segments)
        except AudioError as err:
            raise _bad_request(str(err).replace("clip ", "row ", 1)) from err
        results = [self.classifier.top(s.probs, top_k) for s in scored]
        columns = {
            "label": [r[0]["label"] for r in results],
            "score": [r[0]["score"] for r in results],
            "top_k": results,
        }
        if segments:
            columns["segments"] = [s.segments for s in scored]
        return pd.DataFrame(columns)


def signature() -> Any:
    """No input schema (the pyfunc checks rows itself), only the inference params."""
    return ModelSignature(
        params=ParamSchema(
            [
                ParamSpec("top_k", "long", DEFAULT_TOP_K),
                ParamSpec("batch_size", "long", DEFAULT_BATCH_SIZE),
                ParamSpec("window_s", "double", None),  # None: the model's recorded window
                ParamSpec("hop_s", "double", None),  # None: half the window
                ParamSpec("segments", "boolean", False),
            ]
        )
    )


def requirements() -> list[str]:
    """Pinned versions of :data:`REQUIREMENTS` as installed (for non-local env managers)."""
    pins = []
    for name in REQUIREMENTS:
        try:
            # Without a local version label (torch's "+cpu"): PyPI has no such build.
            pins.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def log_pyfunc_model(run_id: str, model_dir: Path, registered_name: str | None) -> Any:
    """Log ``model_dir`` as the pyfunc model ``model`` of ``run_id`` and register it.

    ``runs:/RUN_ID/model`` then resolves to it (an MLflow 3 LoggedModel linked to the run), and
    ``models:/NAME/VERSION`` when ``registered_name`` is set. The model unpickles
    :class:`AudioClassifierModel` by reference: the serving environment needs ``audioclf``
    installed (``--env-manager local``). Returns MLflow's ``ModelInfo``.
    """
    with mlflow.start_run(run_id=run_id):
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=AudioClassifierModel(),
            artifacts={ARTIFACT: str(model_dir)},
            signature=signature(),
            registered_model_name=registered_name or None,
            pip_requirements=requirements(),
        )
