"""Where: an elementwise choice between two operands by a boolean condition.

Exporters write ``masked_fill`` as ``Where(mask, fill, x)`` (attention masks, padding) and some
activations and selections as ``Where(cond, x, y)`` of two branches. The condition is held
constant (it is boolean and carries no relevance, whether it is a constant or computed from the
data), so the op routes every output element to the operand it was taken from: category *route*
(Gradient rule), relevance goes where the value came from, and an element taken from a constant
(the fill) gives its relevance to nobody, as a bias does. The VJP is exact: the output gradient
where the condition picks the operand, zero elsewhere, summed over broadcast axes.
"""
from __future__ import annotations

from .base import ROUTE, Handler, unbroadcast
from .registry import handles


@handles("Where")
class WhereHandler(Handler):
    category = ROUTE
    linear = False  # a constant operand makes it affine, not linear

    def relevant_inputs(self, node, g):
        return [i for i in (1, 2) if node.input[i] in g.relevant]

    def nonnegative_output(self, node, g, nonnegative):
        """Non-negative when both operands are: relevant ones by the analysis, constant ones by value."""
        for t in node.input[1:3]:
            value = g.const(t)
            if not (nonnegative(t) if t in g.relevant else value is not None and (value >= 0).all()):
                return False
        return True

    def vjp(self, b, node, g, grads, params):
        grad = grads[0]
        out_shape = tuple(g.shape(node.output[0]))
        zero = b.zeros_like(grad)
        cond = node.input[0]
        result = []
        for i in self.relevant_inputs(node, g):
            picked = b.op("Where", [cond, grad, zero] if i == 1 else [cond, zero, grad], hint="where_vjp")
            result.append(unbroadcast(b, picked, out_shape, tuple(g.shape(node.input[i]))))
        return result
