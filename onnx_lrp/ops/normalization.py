"""Normalisations that survive canonization: BatchNormalization not folded (Pass, as Zennit),
LRN (Pass)."""
from __future__ import annotations

import numpy as np

from .base import BATCHNORM, PASS, Handler, attr, unsupported
from .registry import handles


@handles("BatchNormalization")
class BatchNormHandler(Handler):
    """Inference BN ``y = a·x + c`` per channel (axis 1)."""

    category = BATCHNORM
    data_dependent = "BatchNormalization with data-dependent statistics"
    linear = True
    data_input = 0

    def check(self, node, g):
        if any(g.const(t) is None for t in node.input[1:5]):
            raise unsupported(node, "BatchNormalization with data-dependent statistics")
        if len([o for o in node.output if o]) > 1:
            raise unsupported(node, "BatchNormalization in training mode")

    def _scale(self, node, g) -> np.ndarray:
        gamma, _, _, var = (g.const(t).astype(np.float64) for t in node.input[1:5])
        scale = gamma / np.sqrt(var + attr(node, "epsilon", 1e-5))
        rank = len(g.shape(node.input[0]))
        return scale.reshape((-1,) + (1,) * (rank - 2)).astype(np.float32)

    def vjp(self, b, node, g, grads, params):
        return [b.mul(grads[0], b.const(self._scale(node, g), "bn_scale"))]


@handles("LRN")
class LRNHandler(Handler):
    """Local response normalisation; its gradient is not implemented (only Pass applies)."""

    category = PASS
    data_input = 0
