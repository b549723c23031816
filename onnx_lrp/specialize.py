"""Specialising a canonized model to one input shape: shape arithmetic evaluated at compile time.

The explainer is compiled per input shape, so every tensor whose value depends on the graph
inputs only through their *shapes* (``Shape``, ``Size``, integer arithmetic on them,
``ConstantOfShape``, ``Range``, class tokens expanded to the batch, position embeddings sliced to
the sequence length, masks built from constants) is known when compiling. Such tensors are
evaluated with onnxruntime and become initializers, so handlers see Slice bounds, Reshape targets
and added constants as plain arrays.

The batch stays free: the static tensors are evaluated at two batch sizes, and those whose value
changes with the batch (the batch size itself, a class token expanded to it) are left to be
computed at run time, with the nodes they need.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .canonize._edit import copy_model, drop_unused_initializers, reads
from .errors import InvalidInput
from .executor import CPU, make_session

#: Ops whose outputs read only the shape of their input, not its values.
SHAPE_READERS = {"Shape", "Size"}
#: Ops whose outputs differ from run to run: never evaluated at compile time.
VOLATILE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
            "Bernoulli"}
#: Ops whose output *shape* depends on the values of any input.
_SHAPE_FROM_VALUES = {"NonZero", "Unique", "Compress", "Loop", "If", "Scan", "NonMaxSuppression",
                      "StringSplit", "Range", "ConstantOfShape"}
#: Ops whose output shape depends on the values of their inputs after the first (shape, bounds,
#: axes, repeats, scales...); the first input contributes only its shape.
_SHAPE_FROM_ARGS = {"Reshape", "Expand", "Tile", "Slice", "Pad", "Resize", "Upsample", "OneHot", "Split",
                    "Squeeze", "Unsqueeze", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "TopK",
                    "CenterCropPad", "Col2Im"}


@dataclass
class Dependence:
    """Which tensors depend on the values of the graph inputs (``values``), and which have a
    shape that does (``shapes``); every other tensor a node computes is known at compile time."""

    values: set[str]
    shapes: set[str]


def dependence(model: onnx.ModelProto) -> Dependence:
    """Trace how the values and shapes of the graph inputs reach every tensor."""
    values = {i.name for i in model.graph.input}
    shapes: set[str] = set()
    for node in model.graph.node:  # ONNX requires topological order
        read = reads(node)
        outs = [o for o in node.output if o]
        if node.op_type in SHAPE_READERS:
            if any(t in shapes for t in read):
                values.update(outs)
                shapes.update(outs)
            continue
        if node.op_type in VOLATILE or any(t in values for t in read):
            values.update(outs)
        if any(t in shapes for t in read) or _shape_from_values(node, read, values):
            shapes.update(outs)
    return Dependence(values, shapes)


def _shape_from_values(node: onnx.NodeProto, read: set[str], values: set[str]) -> bool:
    if node.op_type in _SHAPE_FROM_VALUES or node.domain not in ("", "ai.onnx"):
        return any(t in values for t in read)
    if node.op_type in _SHAPE_FROM_ARGS:
        return any(t in values for t in node.input[1:] if t)
    return False


def static_boundary(model: onnx.ModelProto, dep: Dependence) -> list[str]:
    """Tensors computed at compile time that a run-time node (or the output) reads, in graph order."""
    computed = {o for n in model.graph.node for o in n.output if o}
    static = computed - dep.values
    needed = {t for n in model.graph.node if any(o in dep.values for o in n.output) for t in reads(n)}
    needed |= {o.name for o in model.graph.output}
    return [o for n in model.graph.node for o in n.output if o in static and o in needed]


def specialize(model: onnx.ModelProto, samples: list[dict[str, np.ndarray]], label: str) -> onnx.ModelProto:
    """The model with its compile-time tensors replaced by initializers.

    ``samples`` holds one feed dict per batch size the compiled graph must serve (two for a free
    batch, one for a fixed one); a static tensor whose value differs between them stays computed
    at run time.
    """
    dep = dependence(model)
    boundary = static_boundary(model, dep)
    if not boundary:
        return model
    runs = [_evaluate(model, boundary, feeds, label) for feeds in samples]
    fixed = {name: runs[0][name] for name in boundary if all(_same(runs[0][name], r[name]) for r in runs[1:])}
    if not fixed:
        return model
    return _fold(model, fixed)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _evaluate(model: onnx.ModelProto, names: list[str], feeds: dict[str, np.ndarray], label: str) -> dict:
    """Values of the static tensors ``names`` on ``feeds``, from the nodes they need only."""
    sub = copy_model(model)
    made_by = {o: n for n in sub.graph.node for o in n.output if o}
    keep, stack = set(), list(names)
    while stack:
        node = made_by.get(stack.pop())
        if node is None or id(node) in keep:
            continue
        keep.add(id(node))
        stack.extend(reads(node))
    nodes = [n for n in sub.graph.node if id(n) in keep]
    read = {t for n in nodes for t in reads(n)}
    inputs = [i for i in sub.graph.input if i.name in read]
    del sub.graph.node[:]
    sub.graph.node.extend(nodes)
    del sub.graph.input[:]
    sub.graph.input.extend(inputs)
    del sub.graph.output[:]
    sub.graph.output.extend(onnx.ValueInfoProto(name=t) for t in names)
    del sub.graph.value_info[:]
    drop_unused_initializers(sub)
    try:
        session = make_session(sub, [CPU], optimize=False)
        values = session.run(names, {i.name: feeds[i.name] for i in inputs})
    except Exception as exc:
        shapes = {k: tuple(np.shape(v)) for k, v in feeds.items()}
        raise InvalidInput(f"{label!r} cannot evaluate its shape arithmetic for inputs of shapes {shapes} "
                           f"({type(exc).__name__}: {exc}); check the input shapes the model expects") from exc
    return dict(zip(names, (np.asarray(v) for v in values)))


def _fold(model: onnx.ModelProto, fixed: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Replace the tensors in ``fixed`` by initializers and drop the nodes no longer needed."""
    from .canonize._edit import set_initializer

    out = copy_model(model)
    for name, value in fixed.items():
        set_initializer(out, name, value)
    # keep the nodes that something still needs, walking back from the outputs
    made_by = {o: n for n in out.graph.node for o in n.output if o and o not in fixed}
    keep, stack = set(), [o.name for o in out.graph.output]
    while stack:
        node = made_by.get(stack.pop())
        if node is None or id(node) in keep:
            continue
        keep.add(id(node))
        stack.extend(reads(node))
    nodes = [n for n in out.graph.node if id(n) in keep]
    # a node that writes a folded tensor and is still needed for another output keeps computing
    # it; the initializer of the same name would then define it twice
    written = {o for n in nodes for o in n.output if o}
    inits = [t for t in out.graph.initializer if t.name not in written]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.graph.initializer[:]
    out.graph.initializer.extend(inits)
    drop_unused_initializers(out)
    return out
