"""Where training and prediction run, and mixed precision.

`device: auto` picks CUDA when torch sees a GPU (under torchrun, the GPU of the process's local
rank) and the CPU otherwise; `cpu`, `cuda` or `cuda:N` in the config override it. Nothing here
or elsewhere assumes CUDA: every CUDA call sits behind a check of the resolved device.

`precision: bf16 | fp16` runs the forward pass under `torch.autocast`; weights, gradients and the
optimizer state stay fp32. fp16 needs CUDA and uses loss scaling (`torch.amp.GradScaler`); bf16
needs none. The fused CPU GRU kernel always computes in fp32 (han/models/packed.py).
"""

from __future__ import annotations

import contextlib
import os

import torch

from han.errors import ConfigError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(setting: str = "auto", local_rank: int | None = None) -> torch.device:
    """The torch device for a `device:` setting; `local_rank` (default: $LOCAL_RANK) picks the GPU under torchrun."""
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if setting == "cpu":
        return torch.device("cpu")
    if setting == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        setting = "cuda"
    if not torch.cuda.is_available():
        raise ConfigError(f"device: {setting!r} but torch sees no CUDA device; use device=auto or device=cpu")
    device = torch.device(setting) if ":" in setting else torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device: {setting!r} but torch sees only {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse precision settings the device cannot run."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision: 'fp16' needs a CUDA device (running on {device}); use precision=bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision: 'bf16' is not supported by {torch.cuda.get_device_name(device)}; use fp16")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for `precision` on `device` (a no-op context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA; a pass-through scaler otherwise (scale, unscale_, step, update still work)."""
    enabled = precision == "fp16" and device.type == "cuda"
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch 2.2
