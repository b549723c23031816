"""Mish (Misra 2019, "Mish: a self regularized non-monotonic activation function"):
``y = x · tanh(softplus(x))``, an elementwise activation. Relevance passes (the Pass rule of every
preset for activations); the VJP multiplies by ``dy/dx = tanh(sp) + x · σ(x) · (1 − tanh²(sp))``
with ``sp = softplus(x)``, which serves gradient baselines and any rule a user names for it.
"""
from __future__ import annotations

from .base import ACTIVATION, Handler
from .registry import handles


@handles("Mish")
class MishHandler(Handler):
    category = ACTIVATION
    data_input = 0

    def vjp(self, b, node, g, grads, params):
        x = node.input[0]
        t = b.op("Tanh", [b.op("Softplus", [x])])
        slope = b.mul(b.mul(x, b.op("Sigmoid", [x])), b.sub(b.const(1.0), b.mul(t, t)))
        return [b.mul(grads[0], b.add(t, slope))]
