"""Elementwise activations: relevance passes (Pass rule); the VJP multiplies by the derivative.

The VJPs serve gradient-based baselines and any rule a user assigns to an activation.
"""
from __future__ import annotations

import numpy as np

from .base import ACTIVATION, NONNEGATIVE, Handler, attr, unbroadcast, unsupported
from .registry import register


class ActivationHandler(Handler):
    """``derivative(b, node, g, x, y)`` returns dy/dx elementwise; ``sign``: NONNEGATIVE for
    activations whose output is >= 0 whatever the input (ReLU, sigmoid, ...)."""

    category = ACTIVATION

    def __init__(self, derivative, sign=None):
        self.derivative = derivative
        self.sign = sign

    data_input = 0
    data_dependent = "its parameters (slope, bounds) depend on the data"

    def vjp(self, b, node, g, grads, params):
        return [b.mul(grads[0], self.derivative(b, node, g, node.input[0], node.output[0]))]


def _mask(b, cond) -> str:
    return b.op("Cast", [cond], to=1)


def _relu(b, node, g, x, y):
    return _mask(b, b.op("Greater", [x, b.const(0.0)]))


def _leaky(b, node, g, x, y):
    return b.op("Where", [b.op("Greater", [x, b.const(0.0)]), b.const(1.0), b.const(attr(node, "alpha", 0.01))])


def _prelu(b, node, g, x, y):
    return b.op("Where", [b.op("Greater", [x, b.const(0.0)]), b.const(1.0), node.input[1]])


def _clip(b, node, g, x, y):
    inside = b.const(1.0)
    for idx, cmp in ((1, "Greater"), (2, "Less")):
        if len(node.input) > idx and node.input[idx]:
            inside = b.mul(inside, _mask(b, b.op(cmp, [x, node.input[idx]])))
    return inside


def _sigmoid(b, node, g, x, y):
    return b.mul(y, b.sub(b.const(1.0), y))


def _tanh(b, node, g, x, y):
    return b.sub(b.const(1.0), b.mul(y, y))


def _elu(b, node, g, x, y):
    alpha = b.const(attr(node, "alpha", 1.0))
    return b.op("Where", [b.op("Greater", [x, b.const(0.0)]), b.const(1.0), b.add(y, alpha)])


def _selu(b, node, g, x, y):
    alpha, gamma = attr(node, "alpha", 1.67326319217681884765625), attr(node, "gamma", 1.05070102214813232421875)
    neg = b.mul(b.op("Exp", [x]), b.const(alpha * gamma))
    return b.op("Where", [b.op("Greater", [x, b.const(0.0)]), b.const(gamma), neg])


def _softplus(b, node, g, x, y):
    return b.op("Sigmoid", [x])


def _hardsigmoid(b, node, g, x, y):
    alpha, beta = attr(node, "alpha", 0.2), attr(node, "beta", 0.5)
    lin = b.add(b.mul(x, b.const(alpha)), b.const(beta))
    inside = b.mul(_mask(b, b.op("Greater", [lin, b.const(0.0)])), _mask(b, b.op("Less", [lin, b.const(1.0)])))
    return b.mul(inside, b.const(alpha))


def _hardswish(b, node, g, x, y):
    # y = x * clip(x/6 + 1/2, 0, 1): derivative 0 below -3, 1 above 3, (2x + 3)/6 between
    mid = b.div(b.add(b.mul(x, b.const(2.0)), b.const(3.0)), b.const(6.0))
    upper = b.op("Where", [b.op("Greater", [x, b.const(3.0)]), b.const(1.0), mid])
    return b.op("Where", [b.op("Less", [x, b.const(-3.0)]), b.const(0.0), upper])


def _softsign(b, node, g, x, y):
    denom = b.add(b.const(1.0), b.op("Abs", [x]))
    return b.div(b.const(1.0), b.mul(denom, denom))


def _celu(b, node, g, x, y):
    alpha = attr(node, "alpha", 1.0)
    neg = b.op("Exp", [b.div(x, b.const(alpha))])
    return b.op("Where", [b.op("Greater", [x, b.const(0.0)]), b.const(1.0), neg])


def _exp(b, node, g, x, y):
    return y


def _log(b, node, g, x, y):
    return b.div(b.const(1.0), x)


def _sqrt(b, node, g, x, y):
    return b.div(b.const(0.5), y)


def _reciprocal(b, node, g, x, y):
    return b.op("Neg", [b.mul(y, y)])


def _abs(b, node, g, x, y):
    return b.op("Sign", [x])


def _erf(b, node, g, x, y):
    # d/dx erf(x) = 2/sqrt(pi) * exp(-x^2)
    return b.mul(b.op("Exp", [b.op("Neg", [b.mul(x, x)])]), b.const(1.1283791670955126))


def _gelu(b, node, g, x, y):
    if attr(node, "approximate", "none") == "tanh":
        return _gelu_tanh(b, x)
    cdf = b.mul(b.add(b.op("Erf", [b.mul(x, b.const(0.7071067811865476))]), b.const(1.0)), b.const(0.5))
    pdf = b.mul(b.op("Exp", [b.mul(b.mul(x, x), b.const(-0.5))]), b.const(0.3989422804014327))
    return b.add(cdf, b.mul(x, pdf))


def _gelu_tanh(b, x):
    # y = x/2 · (1 + tanh(u)), u = c·(x + k·x³): dy/dx = (1 + t)/2 + x/2 · (1 - t²) · c·(1 + 3k·x²)
    c, k = 0.7978845608028654, 0.044715
    x2 = b.mul(x, x)
    u = b.mul(b.mul(x, b.add(b.const(1.0), b.mul(x2, b.const(k)))), b.const(c))
    t = b.op("Tanh", [u])
    du = b.mul(b.add(b.const(1.0), b.mul(x2, b.const(3 * k))), b.const(c))
    outer = b.mul(b.add(b.const(1.0), t), b.const(0.5))
    inner = b.mul(b.mul(b.mul(x, b.const(0.5)), b.sub(b.const(1.0), b.mul(t, t))), du)
    return b.add(outer, inner)


def _pow(b, node, g, x, y):
    # any constant exponent, scalar or broadcast (per channel), of any numeric type
    e = g.const(node.input[1]).astype(np.float64)
    return b.mul(b.op("Pow", [x, b.const(e - 1.0)]), b.const(e))


class PowHandler(ActivationHandler):
    data_dependent = "Pow with a data-dependent exponent"

    def check(self, node, g):
        if node.input[1] in g.relevant or g.const(node.input[1]) is None:
            raise unsupported(node, "Pow with a data-dependent exponent")


class ClipHandler(ActivationHandler):
    def nonnegative_output(self, node, g, nonnegative):
        low = g.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        return low is not None and float(np.min(low)) >= 0


class ClampHandler(ActivationHandler):
    """``Max``/``Min`` of the data and constants, a clamp written without Clip (e.g. a variance
    kept non-negative, ``Max(0, var)``): relevance passes; the VJP is 1 where the data is the
    result. The data may be any operand."""

    data_input = None

    def __init__(self):
        super().__init__(None)

    def check(self, node, g):
        if len(g.relevant_inputs(node)) != 1:
            raise unsupported(node, f"{node.op_type} of several activations")

    def vjp(self, b, node, g, grads, params):
        x = node.input[g.relevant_inputs(node)[0]]
        wins = _mask(b, b.op("Equal", [b.op("Expand", [x, b.op("Shape", [node.output[0]])]), node.output[0]]))
        return [unbroadcast(b, b.mul(grads[0], wins), g.shape(node.output[0]), g.shape(x))]


_DERIVATIVES = {
    "Relu": _relu, "LeakyRelu": _leaky, "PRelu": _prelu, "Clip": _clip, "Sigmoid": _sigmoid, "Tanh": _tanh,
    "Elu": _elu, "Selu": _selu, "Softplus": _softplus, "HardSigmoid": _hardsigmoid, "HardSwish": _hardswish,
    "Softsign": _softsign, "Celu": _celu, "Exp": _exp, "Log": _log, "Sqrt": _sqrt, "Reciprocal": _reciprocal,
    "Abs": _abs, "Erf": _erf, "Gelu": _gelu,
}
#: activations whose output is >= 0 whatever the input
_NONNEGATIVE = {"Relu", "Sigmoid", "Softplus", "HardSigmoid", "Abs", "Exp", "Sqrt"}
for _op, _fn in _DERIVATIVES.items():
    register(ActivationHandler(_fn, NONNEGATIVE if _op in _NONNEGATIVE else None), _op)
register(ClipHandler(_clip), "Clip")
register(PowHandler(_pow), "Pow")
register(ClampHandler(), "Max", "Min")
