"""The model as an MLflow pyfunc: audio in (bytes, base64 or an array with its rate), labels out.

``mlflow models serve -m models:/NAME@ALIAS`` answers over HTTP with this class.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

ARTIFACT = "model_dir"


class AudioClassifierModel(mlflow.pyfunc.PythonModel):
    """Rows with ``audio`` (raw bytes or base64 text) or ``array`` + ``sampling_rate``."""

    def load_context(self, context: Any) -> None:
        from audioclf.predict import Classifier

        self.classifier = Classifier(Path(context.artifacts[ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None):
        from audioclf.data.audio import decode

        top_k = int((params or {}).get("top_k", 5))
        clips = []
        for _, row in model_input.iterrows():
            if "audio" in row and row["audio"] is not None:
                data = row["audio"]
                if isinstance(data, str):
                    data = base64.b64decode(data)
                clips.append(decode(bytes(data)))
            else:
                clips.append(
                    (np.asarray(row["array"], dtype=np.float32), int(row["sampling_rate"]))
                )
        results = self.classifier.classify(clips, top_k=top_k)
        return pd.DataFrame(
            {
                "label": [r[0]["label"] for r in results],
                "score": [r[0]["score"] for r in results],
                "top_k": results,
            }
        )


def log_pyfunc_model(run_id: str, model_dir: Path, registered_name: str | None) -> None:
    """Log ``model_dir`` as a pyfunc model of ``run_id`` and register it under that name."""
    with mlflow.start_run(run_id=run_id):
        mlflow.pyfunc.log_model(
            name="model",
            python_model=AudioClassifierModel(),
            artifacts={ARTIFACT: str(model_dir)},
            registered_model_name=registered_name or None,
            pip_requirements=["audioclf"],
        )
