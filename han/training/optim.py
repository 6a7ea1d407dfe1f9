"""Adam that updates only the embedding rows a batch uses, and gradient clipping that handles it.

A batch touches a few thousand of the 50k embedding rows. With a row-sparse gradient
(`nn.Embedding(sparse=True)`), `LazyAdam` updates the moments and weights of those rows only
(the semantics of `torch.optim.SparseAdam`), instead of streaming the whole 10M-value table and its
two moment tables through memory every step. Dense parameters get exactly `torch.optim.Adam`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from han.config import FLOAT32_MAX, TrainConfig


class LazyAdam(torch.optim.Optimizer):
    """Adam (with L2 weight decay added to the gradient, as torch.optim.Adam); sparse gradients update only their rows."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        """Take one Adam step (sparse gradients update only their rows); return the closure's loss, if any."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                step = float(state["step"])
                bias_correction1 = 1 - beta1**step
                bias_correction2_sqrt = math.sqrt(1 - beta2**step)
                # torch takes the step size as a float32: an absurd rate (train.lr 1e38 is 1e39 at step 1) makes
                # the weights infinite, which training reports as divergence, rather than failing the conversion
                step_size = min(lr / bias_correction1, FLOAT32_MAX)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                if param.grad.is_sparse:
                    grad = coalesced(param.grad)
                    rows, values = grad.indices()[0], grad.values()  # (U,), (U, E)
                    if weight_decay:
                        values = values.add(param[rows], alpha=weight_decay)
                    row_avg = exp_avg[rows].mul_(beta1).add_(values, alpha=1 - beta1)
                    row_avg_sq = exp_avg_sq[rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
                    exp_avg.index_copy_(0, rows, row_avg)
                    exp_avg_sq.index_copy_(0, rows, row_avg_sq)
                    denominator = row_avg_sq.sqrt_().div_(bias_correction2_sqrt).add_(eps)
                    param.index_add_(0, rows, row_avg.div_(denominator), alpha=-step_size)
                else:
                    grad = param.grad if not weight_decay else param.grad.add(param, alpha=weight_decay)
                    exp_avg.lerp_(grad, 1 - beta1)
                    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    denominator = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                    param.addcdiv_(exp_avg, denominator, value=-step_size)
        return loss


def coalesced(grad: torch.Tensor) -> torch.Tensor:
    """A row-sparse gradient with each row once (its entries summed), as `Tensor.coalesce()` gives.

    On the CPU the rows are grouped by numpy's sort, several times faster than torch's: the n-gram channel's
    gradient (25k entries over 11k rows a batch on the IMDB-sized stand-in) took 1.8 ms a step to coalesce.
    """
    if grad.is_coalesced() or grad.device.type != "cpu" or grad.sparse_dim() != 1:
        return grad.coalesce()
    rows, inverse = np.unique(grad._indices()[0].numpy(), return_inverse=True)
    values = grad._values()
    summed = values.new_zeros((len(rows), *values.shape[1:])).index_add_(
        0, torch.from_numpy(inverse.reshape(-1)), values
    )
    return torch.sparse_coo_tensor(
        torch.from_numpy(rows)[None], summed, grad.shape, is_coalesced=True, check_invariants=False
    )


def clip_grad_norm(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Scale all gradients so their joint L2 norm is at most `max_norm` (as torch's clip_grad_norm_), sparse ones included."""
    grads = []
    for param in parameters:
        if param.grad is None:
            continue
        if param.grad.is_sparse:
            param.grad = coalesced(param.grad)  # duplicate rows must be summed before taking the norm
            grads.append(param.grad._values())
        else:
            grads.append(param.grad)
    if not grads:
        return 0.0
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coefficient = max_norm / (float(total) + 1e-6)
    if coefficient < 1.0:
        for grad in grads:
            grad.mul_(coefficient)
    return float(total)


def wide_learning_rate(config: TrainConfig, train_documents: int) -> float:
    """train.wide_lr, with `auto` resolved to 1 / the steps of an epoch over `train_documents` documents."""
    if config.wide_lr == "auto":
        return 1.0 / math.ceil(train_documents / config.batch_size)
    return config.wide_lr


def make_optimizer(model: torch.nn.Module, config: TrainConfig, train_documents: int) -> torch.optim.Optimizer:
    """SGD with momentum, or `LazyAdam` for adam, over the model's trainable parameters (a wide channel's at its own rate).

    `train_documents`, the training split's size, resolves `train.wide_lr: auto`."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    # model.wide's n-gram weights (an ensemble member's too: members.K.wide.*) train at train.wide_lr
    wide = [p for name, p in named if _is_wide(name)]
    groups: list[dict[str, Any]] = [{"params": [p for name, p in named if not _is_wide(name)]}]
    if wide:
        groups.append({"params": wide, "lr": wide_learning_rate(config, train_documents)})
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return LazyAdam(groups, lr=config.lr, weight_decay=config.weight_decay)


def _is_wide(name: str) -> bool:
    return name.startswith("wide.") or ".wide." in name


def lr_factor(step: int, total_steps: int, config: TrainConfig) -> float:
    """Learning-rate multiplier: linear warm-up, then constant, linear or cosine decay to zero."""
    warmup = int(config.warmup_fraction * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if config.scheduler == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if config.scheduler == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
