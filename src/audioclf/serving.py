"""The model as an MLflow pyfunc: audio in (bytes, base64 or an array with its rate), labels out.

The evaluate stage logs ``models/final`` with :func:`log_pyfunc_model` and registers it
(``tracking.registered_model_name``). Serve a registered version over HTTP with

    mlflow models serve -m models:/audioclf-intent@ALIAS --env-manager local -p 5001

``--env-manager local`` uses the current environment (where ``audioclf`` is installed): nothing
is downloaded and no pip environment is built. Request rows (``dataframe_split`` or
``dataframe_records``) carry either

- ``audio``: a WAV/FLAC/OGG/MP3 file as base64 text (JSON) or raw bytes (in Python), or
- ``array`` (mono ``(frames,)`` or ``(frames, channels)`` float samples) and ``sampling_rate``.

The model's signature (:func:`signature`) declares these columns, the answer's and the params,
with a short clip as input example: the server answers HTTP 400 naming the column when a value
has the wrong type, and the pyfunc answers 400 naming the row and the field when a row has
neither ``audio`` nor ``array`` and ``sampling_rate``, or bad audio.

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
import io
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import soundfile as sf
from mlflow.entities import LoggedModelOutput
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import AnyType, Array, Object, Property

from audioclf.classifier import Classifier
from audioclf.data.audio import AudioError, decode
from audioclf.model_store import ARTIFACT
from audioclf.tracking import artifacts
from audioclf.windows import WindowedClassifier, WindowError

DEFAULT_TOP_K = 5
DEFAULT_BATCH_SIZE = 8
EXAMPLE_SECONDS = 0.5
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
    if isinstance(rate, bool) or not isinstance(rate, int | float | np.number) or rate <= 0:
        raise _bad_request(f"row {n}: 'sampling_rate' must be a positive number, not {rate!r}")
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
        records = _records(model_input)
        if not records:  # also a request whose columns are none of the signature's
            raise _bad_request("no rows: each row needs 'audio' or 'array' and 'sampling_rate'")
        clips = [_clip(row, n) for n, row in enumerate(records)]
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


def signature() -> ModelSignature:
    """What a server can check before the model runs: optional ``audio`` (file bytes; base64
    text in JSON), ``array`` and ``sampling_rate`` columns (a row gives one or the other, the
    pyfunc checks that), the answer's columns and the inference params."""
    top = Object([Property("label", DataType.string), Property("score", DataType.double)])
    segment = Object(
        [
            Property("start_s", DataType.double),
            Property("end_s", DataType.double),
            Property("label", DataType.string),
            Property("score", DataType.double),
        ]
    )
    return ModelSignature(
        inputs=Schema(
            [
                ColSpec(DataType.binary, "audio", required=False),
                # Any: mono (frames,) or (frames, channels) samples, and a rate that is an
                # integer, or a float where other rows leave it empty; the pyfunc checks both.
                ColSpec(AnyType(), "array", required=False),
                ColSpec(AnyType(), "sampling_rate", required=False),
            ]
        ),
        outputs=Schema(
            [
                ColSpec(DataType.string, "label"),
                ColSpec(DataType.double, "score"),
                ColSpec(Array(top), "top_k"),
                ColSpec(Array(segment), "segments", required=False),
            ]
        ),
        params=ParamSchema(
            [
                ParamSpec("top_k", "long", DEFAULT_TOP_K),
                ParamSpec("batch_size", "long", DEFAULT_BATCH_SIZE),
                ParamSpec("window_s", "double", None),  # None: the model's recorded window
                ParamSpec("hop_s", "double", None),  # None: half the window
                ParamSpec("segments", "boolean", False),
            ]
        ),
    )


def input_example(sampling_rate: int, seconds: float = EXAMPLE_SECONDS) -> pd.DataFrame:
    """One short clip (a quiet tone, as WAV bytes) in an ``audio`` column: the request MLflow
    stores beside the model and shows in the UI (base64 in ``serving_input_example.json``)."""
    t = np.arange(int(sampling_rate * seconds)) / sampling_rate
    samples = (0.1 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    wav = io.BytesIO()
    sf.write(wav, samples, sampling_rate, format="WAV", subtype="PCM_16")
    return pd.DataFrame({"audio": [wav.getvalue()]})


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

    ``runs:/RUN_ID/model`` then resolves to it (an MLflow 3 LoggedModel whose source is the
    run, and one of the run's outputs), and ``models:/NAME/VERSION`` when ``registered_name``
    is set. The logged model carries the run's params and its ``val_best/*`` and ``test/*``
    figures, each on its dataset (:func:`audioclf.tracking.artifacts.log_model_metrics`); no
    other run metric. The model unpickles :class:`AudioClassifierModel` by reference: the
    serving environment needs ``audioclf`` installed (``--env-manager local``). Returns
    MLflow's ``ModelInfo``.
    """
    client = MlflowClient()
    run = client.get_run(run_id)
    # Created apart from the run, then linked to it: logged inside the run, MLflow would copy
    # every step-0 metric of the run (system metrics too) onto the model, without its dataset.
    model = mlflow.initialize_logged_model(
        name="model",
        source_run_id=run_id,
        params=run.data.params,
        experiment_id=run.info.experiment_id,
    )
    info = mlflow.pyfunc.log_model(
        name="model",
        model_id=model.model_id,
        python_model=AudioClassifierModel(),
        artifacts={ARTIFACT: str(model_dir)},
        signature=signature(),
        input_example=input_example(Classifier(model_dir).sampling_rate),
        registered_model_name=registered_name or None,
        pip_requirements=requirements(),
    )
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    artifacts.log_model_metrics(run_id, model.model_id)
    return info
