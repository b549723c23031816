"""Gather with indices computed at run time (from the input's shape).

``torch.export`` spells some views as index arithmetic: the ``as_strided`` after ConvNeXt's
global average pool is ``Gather(Reshape(x, [-1]), Range(0, N)·C + ...)``, whose indices depend on
the batch size and so are not constants of the compiled graph. The indices are available when
the explainer runs (the forward pass is part of it), so the VJP scatters the gradient back with
``ScatterND(reduction="add")`` on those same indices. Category *route* (Gradient rule), as
Gather with constant indices.
"""
from __future__ import annotations

from .base import KEEPS_SIGN, ROUTE, Handler, attr
from .registry import register_pattern


class RuntimeGatherHandler(Handler):
    category = ROUTE
    sign = KEEPS_SIGN
    linear = True
    data_input = 0
    data_dependent = "its indices are computed from the explained data"

    def vjp(self, b, node, g, grads, params):
        data, indices = node.input[0], node.input[1]
        rank = len(g.shape(data))
        axis = attr(node, "axis", 0) % rank
        index_rank = len(g.shape(indices))
        size = b.op("Shape", [data], start=axis, end=axis + 1)
        indices = b.op("Cast", [indices], to=7)  # int32 or int64 in Gather; int64 in ScatterND
        # negative indices count from the end, as in Gather
        wrapped = b.op("Where", [b.op("Less", [indices, b.ints(0)]), b.add(indices, size), indices])
        grad = grads[0]
        # ScatterND scatters along the leading axes: bring ``axis`` of the data (and the index
        # axes of the gradient) to the front, scatter, and move the axis back
        data_perm = [axis] + [a for a in range(rank) if a != axis]
        grad_axes = list(range(axis, axis + index_rank))
        grad_rank = rank - 1 + index_rank
        grad_perm = grad_axes + [a for a in range(grad_rank) if a not in grad_axes]
        moved_data = b.op("Transpose", [data], perm=data_perm) if axis else data
        zeros = b.zeros_like(moved_data)
        moved = b.op("Transpose", [grad], perm=grad_perm) if grad_perm != list(range(grad_rank)) else grad
        target = b.op("Unsqueeze", [wrapped, b.ints([-1])])
        scattered = b.op("ScatterND", [zeros, target, moved], reduction="add", hint="gather_vjp")
        inverse = [data_perm.index(a) for a in range(rank)]
        return [b.op("Transpose", [scattered], perm=inverse) if axis else scattered]


def _runtime_indices(node, g) -> bool:
    return len(node.input) > 1 and g.const(node.input[1]) is None and node.input[1] not in g.relevant


register_pattern("Gather", _runtime_indices, RuntimeGatherHandler())
