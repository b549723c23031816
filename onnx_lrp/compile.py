"""The compiler: one explainer graph = the model's forward pass + the relevance sweep.

It walks the DAG in reverse topological order; for each node the composite picks a rule and the
rule emits the node's relevance subgraph through the node's handler. Relevance arriving at a
tensor from several consumers is summed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper

from .builder import GraphBuilder
from .canonize.unroll_rnn import unrolled_from
from .composites import Composite
from .context import NodeContext, SharedTensors
from .errors import InvalidInput, UnsupportedOp
from .graph import ModelGraph
from .ops import base as cat
from .ops.base import Handler
from .ops.registry import handler_for
from .weights import store_of

TARGET = "target"
#: the explainer input of weights over the output (seed = weights ⊙ output), compiled with weights=True
WEIGHTS = "target_weights"
RELEVANCE = "relevance"
_LINEAR = (cat.CONV, cat.DENSE, cat.ATTENTION_PROJECTION)


class StandIn(Handler):
    """The handler of an unsupported op a user named a rule for (enough for Pass and Uniform,
    which need neither the op's forward pass nor its gradient)."""

    stand_in = True


_STAND_IN = StandIn()


@dataclass
class Compiled:
    """An explainer graph and the names of its inputs and outputs.

    Every name the compiler adds comes from one allocator that avoids the model's names: the
    extra input is ``target`` (``target_weights`` when compiled with weights) and the first
    relevance output ``relevance`` unless the model uses them, then a fresh variant (``target_1``).
    """

    model: onnx.ModelProto
    input_name: str
    output_name: str
    num_classes: int
    layers: dict[str, str] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    #: explained graph input -> the output holding its relevance (``relevance`` for the first)
    relevances: dict[str, str] = field(default_factory=dict)
    #: the explainer's extra input: classes (N,) int64, or the weights over the output
    target_name: str = TARGET
    #: what must live as long as this program: the :class:`onnx_lrp.sessions.Lease` of its shape
    lease: object = field(default=None, repr=False, compare=False)

    @property
    def relevance_name(self) -> str:
        """The output holding the first explained input's relevance."""
        return next(iter(self.relevances.values()), RELEVANCE)


@dataclass
class Step:
    """How one node will be explained: its handler, category and rule, or why it cannot be."""

    node: onnx.NodeProto
    handler: Handler | None
    category: str | None
    rule: object | None
    problem: UnsupportedOp | None = None
    overridden: bool = False


def plan_nodes(g: ModelGraph, composite: Composite, strict: bool = True) -> list[Step]:
    """A :class:`Step` for every node carrying relevance, in topological order.

    A node no handler supports raises :class:`UnsupportedOp` (``strict``) or is returned with its
    ``problem`` set, unless the composite names a rule for it (``name_map``/``type_map``): then a
    generic handler stands in, which is enough for rules that need neither the op's forward pass
    nor its gradient (Pass, Uniform)."""
    steps, first_seen = [], False
    for node in g.topo_nodes():
        overridden = node.name in getattr(composite, "name_map", {}) or node.op_type in getattr(
            composite, "type_map", {})
        try:
            handler = handler_for(node, g)
            handler.validate(node, g)
            category = handler.category_of(node, g)
        except UnsupportedOp as problem:
            if not overridden:
                if strict:
                    raise
                steps.append(Step(node, None, None, None, problem))
                continue
            handler, category = _STAND_IN, cat.PASS
        # a recurrence's linear maps take the dense rule at every time step, never the first layer's
        is_first = not first_seen and category in _LINEAR and unrolled_from(node) is None
        first_seen = first_seen or category in _LINEAR
        steps.append(Step(node, handler, category, composite.rule_for(node, category, is_first), None, overridden))
    return steps


def assign_rules(g: ModelGraph, composite: Composite) -> list[tuple]:
    """(node, handler, rule) for every node carrying relevance, in topological order."""
    return [(s.node, s.handler, s.rule) for s in plan_nodes(g, composite)]


def compile_explainer(g: ModelGraph, composite: Composite, keep_layers: bool = False,
                      seed_times_output: bool = True, weights: bool = False, device: str = "cpu") -> Compiled:
    """Build the explainer graph. The output relevance is one-hot(target) × output, or the bare
    one-hot with ``seed_times_output=False`` (what gradient-based attributions start from). With
    ``weights=True`` the graph takes float weights shaped like the output instead of a class per
    sample (input :data:`WEIGHTS`), and the seed is weights × output.
    ``device`` (``"cpu"`` or ``"cuda"``) lets handlers pick ops that onnxruntime has kernels for there."""
    plan = assign_rules(g, composite)
    b = GraphBuilder(all_names(g.model), store=store_of(g.model), device=device)
    b.reuse(g.consts)
    # the explainer's own inputs and outputs come from the same allocator as every inner name
    seed_input = b.claim(WEIGHTS if weights else TARGET)
    relevance_names = {name: b.claim(RELEVANCE if i == 0 else f"{RELEVANCE}/{name}")
                       for i, name in enumerate(g.sources)}
    seed = (_weighted_seed(b, g, seed_input, seed_times_output) if weights
            else _seed(b, g, seed_input, seed_times_output))
    relevance: dict[str, list[str]] = {g.output_name: [seed]}
    shared, layers = SharedTensors(), {}
    for node, handler, rule in reversed(plan):
        arriving = [_total(b, relevance.get(t)) for t in node.output]
        if all(r is None for r in arriving):
            continue
        for t, r in zip(node.output, arriving):
            if r is not None:
                layers[t] = r
        ctx = NodeContext(b, g, node, handler, arriving, shared)
        for tensor, r in zip(ctx.inputs, rule(ctx)):
            if r is not None:  # None: the rule gives this input no relevance (e.g. a gate)
                relevance.setdefault(tensor, []).append(r)
    outputs = {}
    for i, (name, source) in enumerate(g.sources.items()):
        if source not in relevance:
            where = f"input {name!r}" + (f" (through {source!r})" if source != name else "")
            raise InvalidInput(f"output {g.output_name!r} of {g.label!r} does not depend on {where} through any "
                               "floating-point path; nothing to explain")
        final = _total(b, relevance[source])
        outputs[name] = relevance_names[name]
        b.op("Identity", [final], outputs=[outputs[name]])
        layers[source] = final
    model, layer_outputs = _assemble(g, b, layers if keep_layers else {}, outputs, seed_input, weights)
    rules = {node.name: repr(rule) for node, _, rule in plan}
    return Compiled(model, g.input_name, g.output_name, _num_classes(g), layer_outputs, rules, outputs, seed_input)


def _total(b: GraphBuilder, terms: list[str] | None) -> str | None:
    if not terms:
        return None
    return b.sum(terms, hint="relevance")


def _num_classes(g: ModelGraph) -> int:
    return int(np.prod(g.shape(g.output_name)[1:], dtype=np.int64))


def _weighted_seed(b: GraphBuilder, g: ModelGraph, weights: str, times_output: bool = True) -> str:
    """weights × output: a mask over a map, a direction in an embedding space, one detection row."""
    return b.op("Mul", [weights, g.output_name], hint="seed") if times_output else b.op("Identity", [weights])


def _seed(b: GraphBuilder, g: ModelGraph, target: str, times_output: bool = True) -> str:
    """one-hot(target) × output; target -1 picks the predicted (arg-max) class."""
    out = g.output_name
    rank = len(g.shape(out))
    flat = out if rank == 2 else b.op("Flatten", [out], axis=1)
    pred = b.op("ArgMax", [flat], axis=1, keepdims=0)
    chosen = b.op("Where", [b.op("Less", [target, b.ints(0)]), pred, target], hint="target")
    onehot = b.op("OneHot", [chosen, b.ints(_num_classes(g)), b.const([0.0, 1.0])], axis=-1)
    seed = b.op("Mul", [onehot, flat], hint="seed") if times_output else onehot
    if rank != 2:
        seed = b.op("Reshape", [seed, b.op("Shape", [out])])
    return seed


def all_names(model: onnx.ModelProto) -> set[str]:
    """Every tensor and node name in ``model`` (subgraphs included), so emitted names cannot
    collide with them."""
    return _names_in(model.graph)


def _names_in(graph: onnx.GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer}
    names |= {v.name for v in list(graph.input) + list(graph.output) + list(graph.value_info)}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        names.add(node.name)
        for a in node.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                names |= _names_in(sub)
    return names


def _assemble(g: ModelGraph, b: GraphBuilder, layers: dict[str, str], relevances: dict[str, str],
              seed_input: str, weights: bool = False) -> tuple[onnx.ModelProto, dict]:
    src = g.model.graph
    inputs = [helper.make_tensor_value_info(vi.name, vi.type.tensor_type.elem_type, _input_dims(g, vi.name))
              for vi in src.input]
    inputs.append(helper.make_tensor_value_info(seed_input, TensorProto.FLOAT, _dims(g, g.output_name)) if weights
                  else helper.make_tensor_value_info(seed_input, TensorProto.INT64, ["N"]))
    outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, _dims(g, g.sources[name]))
               for name, out in relevances.items()]
    outputs.append(helper.make_tensor_value_info(g.output_name, TensorProto.FLOAT, _dims(g, g.output_name)))
    layer_nodes, layer_outputs = [], {}
    for tensor, name in layers.items():
        if not _batch_first(g, tensor):
            continue  # its rows are not the samples: cut to the batch, they would be wrong
        out_name = layer_outputs[tensor] = b.claim(f"relevance:{tensor}")
        layer_nodes.append(helper.make_node("Identity", [name], [out_name], name=b.claim(f"keep:{tensor}")))
        # rank only: an inner tensor's axis 0 need not be the batch (e.g. after a Transpose)
        outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [None] * len(g.shape(tensor))))
    nodes = forward_nodes(g, b) + b.nodes + layer_nodes
    graph = helper.make_graph(nodes, "lrp_explainer", inputs, outputs,
                              initializer=list(src.initializer) + b.initializers)
    model = helper.make_model(graph, opset_imports=list(g.model.opset_import),
                              producer_name="onnx-lrp")
    model.ir_version = g.model.ir_version
    return model, layer_outputs


def _batch_first(g: ModelGraph, tensor: str) -> bool:
    """Whether ``tensor``'s samples lie along axis 0 alone (not moved, not merged with another
    axis): what the outputs of a batched run are cut along and its chunks joined along. Where a
    run holds one sample, the tensors whose axis 0 is 1 (each run's row is its sample; an (L, 1, E)
    tensor would be cut to its first row); with a fixed batch B, assumed for those whose axis 0 is B."""
    if not g.batched:
        return True
    shape = g.shape(tensor)
    if g.holds_one_sample():
        return shape[:1] == (1,)
    axes = g.batch_axes_of(tensor)
    if axes is None:  # a fixed batch: where it is cannot be probed
        return shape[:1] == (g.fixed_batch,)
    return axes == (0,) and shape[0] == 1  # probed at batch 1


def forward_nodes(g: ModelGraph, b: GraphBuilder) -> list[onnx.NodeProto]:
    """The model's own nodes, with the extra outputs the relevance sweep asked them for, or the
    nodes that compute them together with more (see :meth:`GraphBuilder.in_forward`)."""
    nodes = []
    for node in g.model.graph.node:
        replacement = b.forward_replacements.get(node.name)
        nodes.extend(replacement if replacement is not None
                     else [_with_extra_outputs(node, b.extra_outputs.get(node.name))])
    return nodes


def _with_extra_outputs(node: onnx.NodeProto, extra: dict[int, str] | None) -> onnx.NodeProto:
    if not extra:
        return node
    amended = onnx.NodeProto()
    amended.CopyFrom(node)
    while len(amended.output) <= max(extra):
        amended.output.append("")
    for index, name in extra.items():
        amended.output[index] = name
    return amended


def _input_dims(g: ModelGraph, name: str) -> list:
    """A graph input's dims: the batch axis symbolic (the batch is free), the rest as compiled."""
    axis = g.batch_axes.get(name, 0)
    dims = [int(d) for d in g.shape(name)]
    if axis is not None and dims:
        dims[axis] = "N"
    return dims


def _dims(g: ModelGraph, tensor: str) -> list:
    """Declared output dims: the batch is symbolic, the rest as probed."""
    return ["N"] + [int(d) for d in g.shape(tensor)[1:]]
