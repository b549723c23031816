"""Elementwise arithmetic.

With one constant operand, Add/Sub/Mul/Div/Neg are affine: ``y = w·x + c`` (parameters
``weight`` = w and ``bias`` = c, so weight-modifying rules apply). An operand computed at run time
without the explained data (from a feed such as an attention mask, or from integer ids) is a
constant to the rules as well; it has no compile-time value, so the node has no parameters
(rules that modify weights refuse it) and its forward pass and VJP read the operand itself. With
several activations, Add/Sub/Sum/Mean are sums (Norm rule in every preset).
"""
from __future__ import annotations

import numpy as np

from .base import ACTIVATION, AFFINE, SUM, Handler, unbroadcast, unsupported
from .registry import handles


class AffineHandler(Handler):
    category = AFFINE
    linear = True

    def relevant_inputs(self, node, g):
        return g.relevant_inputs(node)[:1]

    def check(self, node, g):
        if node.op_type == "Neg":
            return
        idx = g.relevant_inputs(node)[0]
        if node.op_type == "Div" and idx == 1:
            raise unsupported(node, "division by an activation (c / x) is not affine")

    def _runtime(self, node, g) -> bool:
        """Whether a constant operand is computed at run time (no compile-time value)."""
        idx = g.relevant_inputs(node)[0] if node.op_type != "Neg" else 0
        return any(t and i != idx and g.const(t) is None for i, t in enumerate(node.input))

    def params(self, node, g):
        if node.op_type == "Neg":
            return {"weight": np.array(-1.0, np.float32), "bias": np.array(0.0, np.float32)}
        if self._runtime(node, g):
            return None
        idx = g.relevant_inputs(node)[0]
        if node.op_type in ("Sum", "Mean"):
            return self._sum_params(node, g, idx)
        c = g.const(node.input[1 - idx]).astype(np.float64)
        one, zero = np.ones_like(c), np.zeros_like(c)
        weight, bias = {  # only this op's entry is computed (1/c of a zero bias would warn)
            "Add": lambda: (one, c), "Mul": lambda: (c, zero), "Div": lambda: (1.0 / c, zero),
            "Sub": lambda: (one, -c) if idx == 0 else (-one, c),
        }[node.op_type]()
        return {"weight": weight.astype(np.float32), "bias": bias.astype(np.float32)}

    def _sum_params(self, node, g, idx):
        """Sum(x, c1, ...) = x + Σc; Mean(x, c1, ...) = (x + Σc) / n (one data operand)."""
        consts = [g.const(t).astype(np.float64) for i, t in enumerate(node.input) if t and i != idx]
        total = sum(consts) if consts else np.zeros(())
        scale = 1.0 / len(node.input) if node.op_type == "Mean" else 1.0
        return {"weight": np.full(np.shape(total), scale, np.float32),
                "bias": (np.asarray(total) * scale).astype(np.float32)}

    def forward(self, b, node, g, inputs, params):
        if params is None:  # a run-time operand: the op itself on the substituted data
            return Handler.forward(self, b, node, g, inputs, params)
        scaled = b.mul(inputs[0], b.const(params["weight"], "w"))
        return b.add(scaled, b.const(params["bias"], "b"))

    def vjp(self, b, node, g, grads, params):
        x = node.input[self.relevant_inputs(node, g)[0]]
        weight = b.const(params["weight"], "w") if params is not None else self._runtime_weight(b, node, g)
        grad = b.mul(grads[0], weight) if weight is not None else grads[0]
        return [unbroadcast(b, grad, g.shape(node.output[0]), g.shape(x))]

    def _runtime_weight(self, b, node, g) -> str | None:
        """∂y/∂x for a run-time constant operand: 1 for sums, ±1 for Sub, c for Mul, 1/c for Div."""
        idx = g.relevant_inputs(node)[0]
        others = [t for i, t in enumerate(node.input) if t and i != idx]
        if node.op_type in ("Add", "Sum"):
            return None
        if node.op_type == "Sub":
            return None if idx == 0 else b.const(-1.0)
        if node.op_type == "Mean":
            return b.const(1.0 / len(node.input))
        if node.op_type == "Mul":
            return others[0]
        return b.op("Reciprocal", [others[0]])  # Div, data in the numerator


class SumHandler(Handler):
    """Add/Sub/Sum/Mean of activations (residual connections)."""

    category = SUM
    linear = True

    def check(self, node, g):
        consts = [t for i, t in enumerate(node.input) if t and i not in g.relevant_inputs(node)]
        if consts:
            raise unsupported(node, "a sum of activations and constants; fold the constant into a bias first")

    def vjp(self, b, node, g, grads, params):
        out_shape = g.shape(node.output[0])
        n = len(node.input)
        result = []
        for i in self.relevant_inputs(node, g):
            grad = grads[0]
            if node.op_type == "Sub" and i == 1:
                grad = b.op("Neg", [grad])
            if node.op_type == "Mean":
                grad = b.mul(grad, b.const(1.0 / n))
            result.append(unbroadcast(b, grad, out_shape, g.shape(node.input[i])))
        return result


class ConstantOverHandler(Handler):
    """``c / x`` with a constant c (``1 / sqrt(var + ε)`` of an RMSNorm exported op by op): an
    elementwise nonlinearity of x (category activation); its VJP is ``−g · y / x``."""

    category = ACTIVATION
    data_input = 1

    def vjp(self, b, node, g, grads, params):
        local = b.op("Neg", [b.div(b.mul(grads[0], node.output[0]), node.input[1])])
        return [unbroadcast(b, local, g.shape(node.output[0]), g.shape(node.input[1]))]


@handles("Add", "Sub", "Mul", "Div", "Neg", "Sum", "Mean")
class ArithmeticHandler(Handler):
    """Dispatch on how many operands carry relevance."""

    def __init__(self):
        self.affine, self.sum, self.constant_over = AffineHandler(), SumHandler(), ConstantOverHandler()

    def _pick(self, node, g) -> Handler:
        if node.op_type in ("Add", "Sub", "Sum", "Mean") and len(g.relevant_inputs(node)) > 1:
            return self.sum
        if node.op_type in ("Sum", "Mean") and len(node.input) == 1:
            return self.sum
        if node.op_type in ("Mul", "Div") and len(g.relevant_inputs(node)) > 1:
            raise unsupported(node, f"{node.op_type} of two activations (gating) has no rule yet")
        if node.op_type == "Div" and g.relevant_inputs(node) == [1] and g.const(node.input[0]) is not None:
            return self.constant_over
        return self.affine

    def category_of(self, node, g):
        return self._pick(node, g).category

    def check(self, node, g):
        self._pick(node, g).check(node, g)

    def relevant_inputs(self, node, g):
        return self._pick(node, g).relevant_inputs(node, g)

    def params(self, node, g):
        return self._pick(node, g).params(node, g)

    def forward(self, b, node, g, inputs, params):
        return self._pick(node, g).forward(b, node, g, inputs, params)

    def vjp(self, b, node, g, grads, params):
        return self._pick(node, g).vjp(b, node, g, grads, params)
