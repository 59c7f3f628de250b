"""The GPU report's ``machine``: the machine as a run records it, and each GPU in detail."""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.machine import describe_machine


def gpus() -> list[dict[str, Any]]:
    """Name, memory and compute capability of each CUDA GPU torch sees."""
    if not torch.cuda.is_available():
        return []
    described = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        described.append(
            {
                "name": props.name,
                "memory_gb": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return described


def machine() -> dict[str, Any]:
    """:func:`benchmarks.machine.describe_machine` (versions, CPU, the first GPU and CUDA) with
    every GPU, cuDNN, and whether bf16 and TF32 matmuls are on."""
    cuda = torch.cuda.is_available()
    devices = gpus()
    return {
        **describe_machine(),
        "gpu_count": len(devices),
        "gpus": devices,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "bf16_supported": bool(cuda and torch.cuda.is_bf16_supported()),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
    }
