"""Reading a node's graph context: elementwise chains, value ranges, statistics of a tensor.

Pattern handlers (:mod:`.gating`, :mod:`.layernorm`) use these to recognise what an exporter
spelled out op by op: ``x·sigmoid(x)``, a gate, a value divided by its own standard deviation.
Walks are short and bounded; a pattern that is not recognised falls back to the op's own handler.
"""
from __future__ import annotations

import math

import numpy as np
import onnx

from ..graph import ModelGraph

#: Elementwise ops of one relevant input that are nonlinear.
NONLINEAR_UNARY = {
    "Sigmoid", "HardSigmoid", "HardSwish", "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Tanh", "Erf",
    "Softplus", "Softsign", "Exp", "Log", "Abs", "Sqrt", "Reciprocal", "Clip", "Gelu", "Pow", "Mish",
    "ThresholdedRelu", "Sin", "Cos",
}
#: Elementwise ops of one relevant input that are linear (up to a constant).
LINEAR_UNARY = {"Identity", "Neg", "Dropout"}
#: Arithmetic that is affine when the other operand is a constant.
ARITHMETIC = {"Add", "Sub", "Mul", "Div"}
#: Ops that only rearrange or broadcast values (value range unchanged).
MOVES = {"Expand", "Reshape", "Unsqueeze", "Squeeze", "Tile", "Flatten", "Identity", "Transpose", "Dropout"}
#: Reductions over (non-batch) axes: a tensor computed through one is a statistic.
REDUCTIONS = {"ReduceMean", "ReduceSum", "ReduceL2", "ReduceSumSquare", "ReduceL1", "ReduceMax", "ReduceMin",
              "GlobalAveragePool", "GlobalMaxPool", "ReduceLogSumExp"}

_LIMIT = 16


def producer(g: ModelGraph, tensor: str) -> onnx.NodeProto | None:
    name = g.producer.get(tensor)
    return g.nodes[name] if name is not None else None


def _data_operand(g: ModelGraph, node: onnx.NodeProto) -> int | None:
    """Index of the only relevant input of an arithmetic node whose other operand is constant."""
    rel = g.relevant_inputs(node)
    if len(rel) != 1 or len(node.input) != 2:
        return None
    if g.const(node.input[1 - rel[0]]) is None:
        return None
    if node.op_type == "Div" and rel[0] != 0:
        return None  # c / x is not affine
    return rel[0]


def elementwise_step(g: ModelGraph, node: onnx.NodeProto) -> tuple[str, bool] | None:
    """(input, is_linear) when ``node`` maps one relevant input elementwise to its output
    (same shape, every other operand constant); None otherwise."""
    rel = g.relevant_inputs(node)
    if len(rel) != 1 or not node.output or not _same_shape(g, node.input[rel[0]], node.output[0]):
        return None
    if node.op_type in ARITHMETIC:
        return (node.input[rel[0]], True) if _data_operand(g, node) is not None else None
    if any(t and g.const(t) is None for i, t in enumerate(node.input) if i != rel[0]):
        return None
    if node.op_type in LINEAR_UNARY:
        return node.input[rel[0]], True
    if node.op_type in NONLINEAR_UNARY and rel[0] == 0:
        return node.input[0], False
    return None


def chain(g: ModelGraph, tensor: str) -> dict[str, bool]:
    """Tensors reached walking back from ``tensor`` through elementwise single-input ops, each mapped
    to whether the path from it to ``tensor`` is linear. Insertion order is nearest first."""
    reached, linear, current = {tensor: True}, True, tensor
    for _ in range(_LIMIT):
        node = producer(g, current)
        step = elementwise_step(g, node) if node is not None else None
        if step is None or step[0] in reached:
            break
        current, step_linear = step
        linear = linear and step_linear
        reached[current] = linear
    return reached


def elementwise_sources(g: ModelGraph, tensor: str, limit: int = 2 * _LIMIT) -> set[str] | None:
    """The tensors ``tensor`` is an elementwise function of: walking back through elementwise ops
    of one or several same-shaped relevant inputs (``x + 0.044715·x³``, ``tanh``, ...) until a
    producer is not elementwise. None when the walk needs more than ``limit`` nodes."""
    sources, seen, stack = set(), set(), [tensor]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        node = producer(g, current)
        inputs = _elementwise_inputs(g, node) if node is not None else None
        if inputs is None:
            sources.add(current)
            continue
        limit -= 1
        if limit < 0:
            return None
        stack.extend(inputs)
    return sources


def _elementwise_inputs(g: ModelGraph, node: onnx.NodeProto) -> list[str] | None:
    """The relevant inputs of ``node`` when it is elementwise in all of them, else None."""
    step = elementwise_step(g, node)
    if step is not None:
        return [step[0]]
    rel = g.relevant_inputs(node)
    if node.op_type not in ARITHMETIC or len(rel) != 2 or not node.output:
        return None
    if not all(_same_shape(g, node.input[i], node.output[0]) for i in rel):
        return None
    return [node.input[i] for i in rel]


def value_range(g: ModelGraph, tensor: str, depth: int = _LIMIT) -> tuple[float, float] | None:
    """Bounds every value of ``tensor`` lies in, read off the ops that made it; None if unknown."""
    const = g.const(tensor)
    if const is not None:
        return (float(np.min(const)), float(np.max(const))) if const.size else None
    node = producer(g, tensor)
    if node is None or depth == 0:
        return None
    op = node.op_type
    if op in ("Sigmoid", "HardSigmoid", "Softmax"):
        return 0.0, 1.0
    if op == "Tanh":
        return -1.0, 1.0
    if op == "Relu":
        return 0.0, math.inf
    if op == "Clip":
        low = _const_scalar(g, node, 1, -math.inf)
        high = _const_scalar(g, node, 2, math.inf)
        if low is None or high is None:
            return None
        inner = value_range(g, node.input[0], depth - 1) or (-math.inf, math.inf)
        return max(low, inner[0]), min(high, inner[1])
    if op in MOVES:
        return value_range(g, node.input[0], depth - 1)
    if op in ARITHMETIC and _data_operand(g, node) is not None:
        idx = _data_operand(g, node)
        inner = value_range(g, node.input[idx], depth - 1)
        c = g.const(node.input[1 - idx]).astype(np.float64)
        return _affine_range(op, idx, inner, float(c.min()), float(c.max())) if inner and c.size else None
    return None


def _const_scalar(g, node, index, default):
    if len(node.input) <= index or not node.input[index]:
        return default
    value = g.const(node.input[index])
    return None if value is None else float(np.asarray(value).reshape(-1)[0])


def _affine_range(op, idx, inner, cmin, cmax):
    lo, hi = inner
    if op == "Add":
        return lo + cmin, hi + cmax
    if op == "Sub":
        return (lo - cmax, hi - cmin) if idx == 0 else (cmin - hi, cmax - lo)
    if op == "Div":
        if cmin <= 0 <= cmax:
            return None
        cmin, cmax = 1.0 / cmax, 1.0 / cmin
    with np.errstate(invalid="ignore"):
        corners = [a * b for a in (lo, hi) for b in (cmin, cmax)]
    if any(math.isnan(v) for v in corners):
        return None
    return min(corners), max(corners)


def in_unit_interval(g: ModelGraph, tensor: str) -> bool:
    bounds = value_range(g, tensor)
    return bounds is not None and bounds[0] >= 0.0 and bounds[1] <= 1.0


def is_statistic_of(g: ModelGraph, stat: str, x: str) -> bool:
    """True when ``stat`` is computed from ``x`` (or from a tensor ``x`` is an elementwise function
    of) only through a path that contains a reduction, and has fewer values per sample than ``x``:
    a mean, a standard deviation, a norm of ``x``."""
    # fewer values per sample than x: the statistic itself, or (when it is broadcast back and
    # scaled per feature, as LayerNorm's 1/std · γ) the reduction it is computed through
    size = _numel(g, x)
    sources = set(chain(g, x))
    centred = producer(g, x)
    if centred is not None and centred.op_type == "Sub" and len(g.relevant_inputs(centred)) == 2:
        sources.add(centred.input[0])
    seen, stack = set(), [(stat, False, 0)]
    while stack:
        tensor, reduced, depth = stack.pop()
        if tensor in sources and reduced:
            return True
        if (tensor, reduced) in seen or depth > _LIMIT or tensor not in g.relevant:
            continue
        seen.add((tensor, reduced))
        node = producer(g, tensor)
        if node is None:
            continue
        now_reduced = reduced or (node.op_type in REDUCTIONS and _numel(g, node.output[0]) < size)
        stack.extend((t, now_reduced, depth + 1) for t in node.input if t in g.relevant)
    return False


def _numel(g: ModelGraph, tensor: str) -> int:
    return int(np.prod(g.shape(tensor)[1:], dtype=np.int64))


def _same_shape(g: ModelGraph, a: str, b: str) -> bool:
    try:
        return tuple(g.shape(a)) == tuple(g.shape(b))
    except KeyError:
        return False
