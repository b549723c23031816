"""Normalisation over features: LayerNormalization, InstanceNormalization and the centring
``x − mean(x)`` of a decomposed LayerNorm.

Relevance (category *normalize*, Pass in every preset) follows AttnLRP (Achtibat et al. 2024,
"AttnLRP: attention-aware layer-wise relevance propagation for transformers") and Ali et al. 2022
("XAI for transformers: better explanations through conservative propagation"): with the standard
deviation held constant the normalisation is linear, and AttnLRP propagates it with the identity
rule, so relevance passes unchanged; γ and β are elementwise and pass too. The decomposed form
``(x − mean(x)) / sqrt(mean((x − mean(x))²) + ε)`` is two nodes that carry relevance: the centring
``Sub`` below (signal ``x``, the mean a constant) and the ``Div`` by the statistic
(:mod:`.gating`), so the whole chain is the identity as well.

The VJPs are exact (the statistics are *not* held constant there), for gradient-based methods.
"""
from __future__ import annotations

from .base import NORMALIZE, Handler, attr, unbroadcast, unsupported
from .registry import handles, register_pattern
from .structure import producer


@handles("LayerNormalization", "InstanceNormalization")
class NormalizationHandler(Handler):
    """``y = γ · (x − mean(x)) / sqrt(var(x) + ε) + β`` over :meth:`axes`, γ and β constant."""

    category = NORMALIZE
    data_input = 0
    data_dependent = "its scale or bias depends on the data"

    def check(self, node, g):
        if any(t and g.const(t) is None for t in node.input[1:3]):
            raise unsupported(node, "its scale or bias is computed at run time; onnx-lrp needs constants")
        if any(t for t in node.output[1:]):
            raise unsupported(node, "its mean / inverse standard deviation outputs are used")
        if any(g.is_batch_axis(node.input[0], a) for a in self.axes(node, g)):
            raise unsupported(node, "it normalises over the batch axis, which mixes samples")

    def axes(self, node, g) -> list[int]:
        rank = len(g.shape(node.input[0]))
        if node.op_type == "InstanceNormalization":
            return list(range(2, rank))
        return list(range(attr(node, "axis", -1) % rank, rank))

    def _scale(self, b, node, g) -> str:
        """γ shaped to broadcast against x."""
        scale = g.const(node.input[1])
        if node.op_type == "InstanceNormalization":
            rank = len(g.shape(node.input[0]))
            scale = scale.reshape((-1,) + (1,) * (rank - 2))
        return b.const(scale, "norm_scale")

    def _mean(self, b, node, g):
        axes = self.axes(node, g)
        shape = g.shape(node.input[0])
        count = 1
        for a in axes:
            count *= int(shape[a])

        def mean(t):  # ReduceSum takes its axes as an input from opset 13, ReduceMean only from 18
            return b.mul(b.op("ReduceSum", [t, b.ints(axes)], keepdims=1), b.const(1.0 / count))
        return mean

    def _statistics(self, b, node, g):
        """(centred x, 1/σ) as the node computes them."""
        mean = self._mean(b, node, g)
        x = node.input[0]
        centred = b.sub(x, mean(x))
        var = mean(b.mul(centred, centred))
        inv_std = b.div(b.const(1.0), b.op("Sqrt", [b.add(var, b.const(attr(node, "epsilon", 1e-5)))]))
        return centred, inv_std

    def vjp(self, b, node, g, grads, params):
        mean = self._mean(b, node, g)
        centred, inv_std = self._statistics(b, node, g)
        normed = b.mul(centred, inv_std)
        dn = b.mul(grads[0], self._scale(b, node, g))
        inner = b.sub(b.sub(dn, mean(dn)), b.mul(normed, mean(b.mul(dn, normed))))
        return [b.mul(inner, inv_std)]

    def detached_vjp(self, b, node, g, grad):
        """The VJP with σ held constant: ``C^T (γ/σ ⊙ grad)``, C the centring (see
        :class:`onnx_lrp.rules.DetachStd`)."""
        mean = self._mean(b, node, g)
        _, inv_std = self._statistics(b, node, g)
        v = b.mul(b.mul(grad, self._scale(b, node, g)), inv_std)
        return [b.sub(v, mean(v))]


class CentringHandler(Handler):
    """``Sub(x, ReduceMean(x))``: signal ``x``; the mean is a second relevant input (exact VJP),
    treated as a constant by Pass."""

    category = NORMALIZE

    def relevant_inputs(self, node, g):
        return [0, 1]

    def signal(self, node, g):
        return 0

    def vjp(self, b, node, g, grads, params):
        out_shape = g.shape(node.output[0])
        return [unbroadcast(b, grads[0], out_shape, g.shape(node.input[0])),
                unbroadcast(b, b.op("Neg", [grads[0]]), out_shape, g.shape(node.input[1]))]

    def detached_vjp(self, b, node, g, grad):
        """The VJP of ``x − mean(x)`` into x through both paths (the mean is a function of x, not
        a constant); the mean input gets None. For :class:`onnx_lrp.rules.DetachStd`."""
        out_shape, mean_shape = g.shape(node.output[0]), g.shape(node.input[1])
        axes = [i for i, (o, m) in enumerate(zip(out_shape, mean_shape)) if m == 1 and o != 1]
        count = 1
        for a in axes:
            count *= int(out_shape[a])
        mean = b.mul(b.op("ReduceSum", [grad, b.ints(axes)], keepdims=1), b.const(1.0 / count))
        return [unbroadcast(b, b.sub(grad, mean), out_shape, g.shape(node.input[0])), None]


def _is_centring(node, g) -> bool:
    if len(node.input) != 2 or g.relevant_inputs(node) != [0, 1]:
        return False
    mean = producer(g, node.input[1])
    return (mean is not None and mean.op_type in ("ReduceMean", "GlobalAveragePool")
            and mean.input[0] == node.input[0] and len(g.shape(node.input[1])) == len(g.shape(node.input[0])))


register_pattern("Sub", _is_centring, CentringHandler())
