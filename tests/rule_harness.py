"""Run one rule on one node of a small model with an arbitrary output relevance."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from onnx_lrp import Explainer
from onnx_lrp.builder import GraphBuilder
from onnx_lrp.compile import all_names, forward_nodes
from onnx_lrp.context import NodeContext, SharedTensors
from onnx_lrp.ops.registry import handler_for


def single_node_model(op_type, inputs, consts: dict, rank: int, **attrs) -> onnx.ModelProto:
    """One node reading graph input ``x`` (rank ``rank``, all dims free) and constant initializers."""
    node = helper.make_node(op_type, inputs, ["y"], name="node", **attrs)
    graph = helper.make_graph(
        [node], "single", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None] * rank)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * rank)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run_rule(model: onnx.ModelProto, rule, x: np.ndarray, R: np.ndarray, node_name: str = "node"):
    """Relevance at each relevant input of ``node_name`` when ``R`` arrives at its output (inputs the
    rule gives none, e.g. a gate, are left out)."""
    explainer = Explainer(model)
    g = explainer.graph(x.shape[1:])
    node = g.nodes[node_name]
    b = GraphBuilder(all_names(g.model) | {"R"})
    ctx = NodeContext(b, g, node, handler_for(node, g), ["R"], SharedTensors())
    outs = [r for r in rule(ctx) if r is not None]
    names = [f"out{i}" for i in range(len(outs))]
    for src, dst in zip(outs, names):
        b.op("Identity", [src], outputs=[dst])
    graph = helper.make_graph(
        forward_nodes(g, b) + b.nodes, "rule",
        [helper.make_tensor_value_info(g.input_name, TensorProto.FLOAT, None),
         helper.make_tensor_value_info("R", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names],
        list(g.model.graph.initializer) + b.initializers)
    compiled = helper.make_model(graph, opset_imports=list(g.model.opset_import))
    session = ort.InferenceSession(compiled.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(names, {g.input_name: x.astype(np.float32), "R": R.astype(np.float32)})
