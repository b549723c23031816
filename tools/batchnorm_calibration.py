"""Seeded BatchNorm statistics for the fixture builders (needs torch)."""
from __future__ import annotations

import torch


def calibrate_batchnorm(model, calibration, norm_types) -> None:
    """Measure running statistics on ``calibration`` (so activations keep a sane scale through the
    depth), then perturb them: mean + N(0, 0.05), var · U(0.8, 1.25), so folded biases are nonzero
    and running_var stays positive. Uses the global torch RNG; leaves the model in eval mode."""
    norms = [module for module in model.modules() if isinstance(module, norm_types)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(calibration)
    model.eval()
    for norm in norms:
        norm.momentum = 0.1
        norm.running_mean += torch.randn(norm.running_mean.shape) * 0.05
        norm.running_var *= 0.8 + 0.45 * torch.rand(norm.running_var.shape)
