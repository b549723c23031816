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

from .canonize._edit import copy_model, drop_unused_initializers, needed_by, reads
from .canonize.identity import remove_identities
from .errors import InvalidInput
from .executor import CPU, make_session
from .weights import make_initializer, store_of

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
    model = inline_known_ifs(model)
    dep = dependence(model)
    boundary = static_boundary(model, dep)
    if not boundary:
        return model
    runs = [_evaluate(model, boundary, feeds, label) for feeds in samples]
    fixed = {name: runs[0][name] for name in boundary if all(_same(runs[0][name], r[name]) for r in runs[1:])}
    if not fixed:
        return model
    folded = _fold(model, fixed)
    # an If whose condition was just computed is inlined, and its branch may hold shape arithmetic
    return specialize(folded, samples, label) if _known_ifs(folded) else folded


def _known_ifs(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    known = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "If" and n.input[0] in known]


def inline_known_ifs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace each ``If`` whose condition is an initializer by the nodes of the branch it takes
    (their own tensors renamed under the If's name), so no control flow is left to explain."""
    if not _known_ifs(model):
        return model
    known = {t.name: t for t in model.graph.initializer}
    out = copy_model(model)
    nodes = []
    for node in out.graph.node:
        branch = _taken_branch(node, known) if node.op_type == "If" and node.input[0] in known else None
        if branch is None:
            nodes.append(node)
            continue
        nodes.extend(_inline(out, node, branch))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    drop_unused_initializers(out)
    return remove_identities(out)  # a branch that returns an outer tensor left a copy


def _taken_branch(node: onnx.NodeProto, known: dict) -> onnx.GraphProto | None:
    from .weights import tensor_value

    cond = bool(np.asarray(tensor_value(known[node.input[0]])).reshape(-1)[0])
    wanted = "then_branch" if cond else "else_branch"
    return next((a.g for a in node.attribute if a.name == wanted), None)


def _inline(model: onnx.ModelProto, node: onnx.NodeProto, branch: onnx.GraphProto) -> list[onnx.NodeProto]:
    defined = {t.name for t in branch.initializer} | {o for n in branch.node for o in n.output if o}
    rename = {name: f"{node.name}/{name}" for name in defined}
    passed = []  # branch results that are outer tensors (or repeated) need a copy
    for result, out in zip(branch.output, node.output):
        if result.name in defined and rename[result.name].startswith(f"{node.name}/") and out:
            rename[result.name] = out
        elif out:
            passed.append((result.name, out))
    for t in branch.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(t)
        copy.name = rename[t.name]
        model.graph.initializer.append(copy)
    inlined = []
    for inner in branch.node:
        new = onnx.NodeProto()
        new.CopyFrom(inner)
        new.name = f"{node.name}/{inner.name or inner.op_type}_{len(inlined)}"
        new.input[:] = [rename.get(t, t) for t in inner.input]
        new.output[:] = [rename.get(t, t) for t in inner.output]
        _rename_subgraphs(new, rename)  # a nested If/Loop reads the branch's tensors by name
        inlined.append(new)
    for result, out in passed:
        inlined.append(onnx.helper.make_node("Identity", [rename.get(result, result)], [out],
                                             name=f"{node.name}/result_{out}"))
    return inlined


def _rename_subgraphs(node: onnx.NodeProto, rename: dict[str, str]) -> None:
    """Apply ``rename`` to the outer-scope names that ``node``'s subgraphs read, leaving the names
    a subgraph defines itself alone."""
    for a in node.attribute:
        graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else (
            list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else [])
        for g in graphs:
            own = ({t.name for t in g.initializer} | {i.name for i in g.input}
                   | {o for n in g.node for o in n.output if o})
            outer = {k: v for k, v in rename.items() if k not in own}
            for inner in g.node:
                inner.input[:] = [outer.get(t, t) for t in inner.input]
                _rename_subgraphs(inner, outer)
            for out in g.output:
                if out.name in outer:
                    out.name = outer[out.name]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _needed(nodes, made_by: dict, roots: list[str]) -> list[onnx.NodeProto]:
    """The ``nodes`` (in their order) that ``roots`` depend on, walking back through ``made_by``."""
    keep = needed_by(roots, made_by.get)
    return [n for n in nodes if id(n) in keep]


def _evaluate(model: onnx.ModelProto, names: list[str], feeds: dict[str, np.ndarray], label: str) -> dict:
    """Values of the static tensors ``names`` on ``feeds``, from the nodes they need only."""
    sub = copy_model(model)
    made_by = {o: n for n in sub.graph.node for o in n.output if o}
    nodes = _needed(sub.graph.node, made_by, names)
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
    from .probe import screen_sizes  # (probe imports nothing from here)

    screen_sizes(sub, {i.name: feeds[i.name] for i in inputs}, label)  # before onnxruntime allocates
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
    out = copy_model(model)
    store = store_of(out)
    # (folded tensors are node outputs, so no initializer has their name yet); np.asarray keeps a
    # scalar 0-d, as the rank of e.g. a Gather index or an Unsqueeze size needs
    out.graph.initializer.extend(make_initializer(name, np.asarray(value), store) for name, value in fixed.items())
    # keep the nodes that something still needs, walking back from the outputs
    made_by = {o: n for n in out.graph.node for o in n.output if o and o not in fixed}
    nodes = _needed(out.graph.node, made_by, [o.name for o in out.graph.output])
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
