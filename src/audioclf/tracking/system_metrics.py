"""System metrics in the train and evaluate runs: what the machine did while a stage ran.

MLflow's own monitor samples CPU, memory, disk and network (and each GPU's utilisation and
memory where NVIDIA's management library, ``nvidia-ml-py``, is installed) every
``tracking.system_metrics_interval_s`` seconds into the run as ``system/*`` metrics, from when
the run is started or resumed until it ends; null turns it off. Train's run is started by
Accelerate's MLflow tracker, which takes no switch for it: MLflow's documented variables turn it
on for the runs started meanwhile. A stage shorter than one interval logs no sample.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from omegaconf import DictConfig

from audioclf.devices import env_vars

ENABLE_ENV = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"
INTERVAL_ENV = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"


@contextlib.contextmanager
def sampled(tracking: DictConfig) -> Iterator[None]:
    """MLflow runs started or resumed in this block log system metrics every
    ``tracking.system_metrics_interval_s`` seconds until they end (none when it is null);
    afterwards MLflow's variables are as they were."""
    interval = tracking.system_metrics_interval_s
    if interval is None:
        values = {ENABLE_ENV: "false"}
    else:
        values = {ENABLE_ENV: "true", INTERVAL_ENV: str(float(interval))}
    with env_vars(values):
        yield
