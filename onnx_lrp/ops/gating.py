"""Products of two activations: gates, ``x·f(x)`` activations, division by a statistic.

An exporter writes SiLU as ``Mul(x, Sigmoid(x))``, hard-swish as ``Mul(x, Clip(x + 3, 0, 6)) / 6``,
GELU as ``x · 0.5 · (1 + Erf(x / √2))``, a squeeze-excitation block as ``Mul(x, HardSigmoid(...))``
and LayerNorm/RMSNorm as ``Div(x − mean, Sqrt(var + ε))`` or ``Mul(x, 1/Sqrt(...))``. Each is a
``Mul``/``Div`` whose two operands both carry relevance; this handler tells which operand is the
*signal* and what the node is:

==============  ===============================================  ==========  =======================
kind            recognised as                                    category    default rule (Pass)
==============  ===============================================  ==========  =======================
activation      both operands elementwise functions of one x,    activation  all relevance to the
                one of them linear in x (``x·σ(x)``, GELU, ...)               linear operand
gate            one operand's values lie in [0, 1] (sigmoid,     gate        all to the signal; the
                hard-sigmoid, decomposed hard-sigmoid, through                gate is a constant
                Expand/Reshape/...); else the broadcast operand
normalisation   one operand is a statistic of the other          normalize   all to the value; the
                (computed through a reduction): Div by a std,                 statistic is a constant
                Mul by 1/std
==============  ===============================================  ==========  =======================

The VJP is the exact product (quotient) rule for both operands, so gradient-based methods see the
true gradient; which operand gets relevance is a matter of the rule (:class:`onnx_lrp.rules.Pass`:
the signal; :class:`onnx_lrp.rules.Uniform`: half each). A product of two activations without a
recognisable signal (e.g. two equally shaped branches) is a gate whose signal is unknown: Pass
then raises and asks for a rule by node name.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import ACTIVATION, GATE, NORMALIZE, Handler, unbroadcast
from .registry import register_pattern
from .structure import MOVES, chain, elementwise_sources, in_unit_interval, is_statistic_of, producer


@dataclass(frozen=True)
class Product:
    """What a Mul/Div of two activations is: its category and the index (in ``node.input``) of
    the signal operand, or None when no operand can be called the signal."""

    category: str
    signal: int | None


def classify(node, g) -> Product | None:
    """The product pattern of ``node`` or None when it is not a product of two activations that
    this module handles (the op type's own handler then decides)."""
    return g.memo("product pattern", node, lambda: _classify(node, g))


def _classify(node, g) -> Product | None:
    if len(node.input) != 2 or g.relevant_inputs(node) != [0, 1]:
        return None
    a, b = node.input
    if node.op_type == "Div":
        return Product(NORMALIZE, 0) if is_statistic_of(g, b, a) else None
    if node.op_type != "Mul":
        return None
    activation = _elementwise_product(g, a, b)
    if activation is not None:
        return activation
    gates = [in_unit_interval(g, t) for t in (a, b)]
    if gates[0] != gates[1]:
        return Product(GATE, 0 if gates[1] else 1)
    for signal, stat in ((0, b), (1, a)):
        if is_statistic_of(g, stat, node.input[signal]):
            return Product(NORMALIZE, signal)
    sizes = [_per_sample(g, t) for t in (a, b)]
    if sizes[0] != sizes[1]:
        return Product(GATE, 0 if sizes[0] > sizes[1] else 1)
    glu = _gated_linear_unit(g, a, b)
    if glu is not None:
        return Product(GATE, glu)
    return Product(GATE, None)


def _gated_linear_unit(g, a: str, b: str) -> int | None:
    """``act(x W_g) · (x W_u)`` (GLU, SwiGLU, GeGLU): both operands linear maps of one x, one of them
    through a nonlinearity (the gate); the position of the other (the signal), else None."""
    for gate, signal in ((0, 1), (1, 0)):
        act = producer(g, (a, b)[gate])
        if act is None or not _is_activation(g, act):
            continue
        inner = act.input[0] if act.op_type in _ACTIVATIONS else _product_input(g, act)
        source = _linear_source(g, inner) if inner else None
        if source is not None and source == _linear_source(g, (a, b)[signal]):
            return signal
    return None


_ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "Gelu", "Elu", "Selu", "Softplus", "HardSigmoid", "HardSwish",
                "LeakyRelu", "Celu", "Mish", "Softsign"}
_LINEAR = {"Gemm", "MatMul", "Conv"}


def _is_activation(g, node) -> bool:
    if node.op_type in _ACTIVATIONS:
        return True
    product = classify(node, g) if node.op_type in ("Mul", "Div") else None
    return product is not None and product.category == ACTIVATION


def _product_input(g, node) -> str | None:
    """The x of an ``f(x)·h(x)`` activation: the common source of both factors."""
    ca, cb = chain(g, node.input[0]), chain(g, node.input[1])
    return next((t for t in cb if t in ca), None)


def _linear_source(g, tensor: str, depth: int = 8) -> str | None:
    """The data input of the linear layer (Gemm, MatMul, Conv with constant weights) that made
    ``tensor``, both looked up through reshapes and the like; None if there is none."""
    node = producer(g, tensor)
    while node is not None and node.op_type in MOVES and depth > 0:
        node, depth = producer(g, node.input[0]), depth - 1
    if node is None or node.op_type not in _LINEAR or g.const(node.input[1]) is None:
        return None
    source = node.input[0]
    upstream = producer(g, source)
    while upstream is not None and upstream.op_type in MOVES and depth > 0:
        source, upstream, depth = upstream.input[0], producer(g, upstream.input[0]), depth - 1
    return source




def _elementwise_product(g, a: str, b: str) -> Product | None:
    """``f(x)·h(x)`` with both factors elementwise functions of a common x: an activation whose
    signal is the factor linear in x (x itself in ``x·σ(x)``, ``0.5·x`` in a GELU)."""
    ca, cb = chain(g, a), chain(g, b)
    common = next((t for t in cb if t in ca), None)
    if common is None:
        return _function_of_linear(g, ca, b, 0) or _function_of_linear(g, cb, a, 1)
    linear = (ca[common], cb[common])
    if linear[0] != linear[1]:
        return Product(ACTIVATION, 0 if linear[0] else 1)
    if linear[0]:
        return Product(ACTIVATION, 0)  # x·(c·x): a square; either factor is the signal
    gates = [in_unit_interval(g, t) for t in (a, b)]
    if gates[0] != gates[1]:
        return Product(ACTIVATION, 1 if gates[0] else 0)  # e.g. tanh(x)·σ(x): σ is the gate
    return Product(ACTIVATION, None)


def _function_of_linear(g, linear_chain: dict, other: str, signal: int) -> Product | None:
    """``c·x · h(x)`` where ``h`` is elementwise in x through several-input ops too (tanh-GELU:
    ``0.5x · (1 + tanh(0.798·(x + 0.045·x³)))``): the linear factor is the signal."""
    sources = elementwise_sources(g, other)
    if sources is None or len(sources) != 1:
        return None
    (source,) = sources
    if linear_chain.get(source) and source != other:
        return Product(ACTIVATION, signal)
    return None


def _per_sample(g, tensor) -> int:
    shape = g.shape(tensor)
    size = 1
    for d in shape[1:]:
        size *= int(d)
    return size


class ProductHandler(Handler):
    """Mul/Div of two activations; relevant inputs are listed signal first."""

    def _product(self, node, g) -> Product:
        return classify(node, g)

    def category_of(self, node, g):
        return self._product(node, g).category

    def relevant_inputs(self, node, g):
        signal = self._product(node, g).signal
        return [0, 1] if signal in (None, 0) else [1, 0]

    def signal(self, node, g) -> int | None:
        """Position of the signal among :meth:`relevant_inputs` (always first), None if unknown."""
        return None if self._product(node, g).signal is None else 0

    def vjp(self, b, node, g, grads, params):
        grad, out_shape = grads[0], g.shape(node.output[0])
        result = []
        for i in self.relevant_inputs(node, g):
            if node.op_type == "Mul":
                local = b.mul(grad, node.input[1 - i])
            elif i == 0:
                local = b.div(grad, node.input[1])
            else:  # d(a/s)/ds = -y/s
                local = b.op("Neg", [b.div(b.mul(grad, node.output[0]), node.input[1])])
            result.append(unbroadcast(b, local, out_shape, g.shape(node.input[i])))
        return result


def _matches(node, g) -> bool:
    return classify(node, g) is not None


_HANDLER = ProductHandler()
register_pattern("Mul", _matches, _HANDLER)
register_pattern("Div", _matches, _HANDLER)
