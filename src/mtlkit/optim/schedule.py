"""The papers' learning-rate schedule ``r_i = r0 · γ^(i/η)`` over optimisation steps i."""

from __future__ import annotations

import torch


def exponential_decay(optimizer: torch.optim.Optimizer, gamma: float, eta: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Continuous (non-staircase) exponential decay, as TensorFlow's ``exponential_decay`` that TOMATO uses:
    the learning rate is multiplied by ``gamma`` every ``eta`` steps, smoothly."""
    if not 0 < gamma <= 1:
        raise ValueError(f"lr_decay (γ) must be in (0, 1], got {gamma}")
    if eta <= 0:
        raise ValueError(f"decay_steps (η) must be positive, got {eta}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: gamma ** (i / eta))
