"""Model weights in safetensors: written atomically, loaded strictly, never unpickled."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save

from han.errors import RunDirError
from han.util.atomic import write_bytes_atomic


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Write the model's state dict (on the CPU) to `path` as safetensors, atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_bytes_atomic(path, save(state))


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load safetensors weights (never a pickle) into `model`, strictly."""
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise RunDirError(f"{path}: weights missing; run `han train` first") from None
    except Exception as error:  # safetensors raises its own error type for damaged files
        raise RunDirError(f"{path}: not a readable safetensors file ({error})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise RunDirError(f"{path}: weights do not fit the configured model ({str(error).splitlines()[0]})") from None
