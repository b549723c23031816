"""Small LSTM/GRU/RNN ONNX models with random weights, built with onnx.helper (no torch)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def recurrent_model(op="LSTM", direction="forward", steps=5, batch=1, features=3, hidden=4, layout=0,
                    seed=0, bias=True, states=None, outputs=("Y", "Y_h", "Y_c"), head=None, peepholes=False,
                    sequence_lens=None, opset=17, weight_scale=0.6, **attrs):
    """A graph of one recurrent node on input ``x`` ([T, B, F], or [B, T, F] with ``layout=1``).

    ``states``: None (absent), "zero" or "random" (constant initial states). ``head``: None (the node's
    outputs are the graph outputs) or "linear" (one output: a Gemm on the flattened, batch-first Y).
    """
    if op != "GRU":
        attrs.pop("linear_before_reset", None)  # a GRU attribute; 0 elsewhere means the same
    rng = np.random.default_rng(seed)
    d = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    inits = [numpy_helper.from_array((rng.standard_normal((d, g * hidden, features)) * weight_scale)
                                     .astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((d, g * hidden, hidden)) * weight_scale)
                                     .astype(np.float32), "R")]
    inputs = ["x", "W", "R"]
    inputs.append("B" if bias else "")
    if bias:
        inits.append(numpy_helper.from_array((rng.standard_normal((d, 2 * g * hidden)) * 0.3).astype(np.float32),
                                             "B"))
    inputs.append("seq" if sequence_lens is not None else "")
    if sequence_lens is not None:
        inits.append(numpy_helper.from_array(np.asarray(sequence_lens, np.int32), "seq"))
    state_shape = (batch, d, hidden) if layout else (d, batch, hidden)
    for name in (["h0", "c0"] if op == "LSTM" else ["h0"]):
        if states is None:
            inputs.append("")
            continue
        value = np.zeros(state_shape) if states == "zero" else rng.standard_normal(state_shape) * 0.5
        inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        inputs.append(name)
    if peepholes:
        inits.append(numpy_helper.from_array((rng.standard_normal((d, 3 * hidden)) * 0.5).astype(np.float32), "P"))
        inputs.append("P")
    while inputs and inputs[-1] == "":
        inputs.pop()
    names = {"Y": "Y", "Y_h": "Y_h", "Y_c": "Y_c"}
    node_outputs = [names[k] if k in outputs else "" for k in ("Y", "Y_h", "Y_c")[:3 if op == "LSTM" else 2]]
    while node_outputs and node_outputs[-1] == "":
        node_outputs.pop()
    nodes = [helper.make_node(op, inputs, node_outputs, name=f"{op.lower()}_0", hidden_size=hidden,
                              direction=direction, layout=layout, **attrs)]
    x_shape = [batch, steps, features] if layout else [steps, batch, features]
    if head is None:
        shapes = {"Y": [batch, steps, d, hidden] if layout else [steps, d, batch, hidden],
                  "Y_h": state_shape, "Y_c": state_shape}
        graph_outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, shapes[o]) for o in node_outputs if o]
    else:
        # batch-first Y [B, T, D, H] -> flatten -> Gemm to 3 classes
        y = "Y"
        if not layout:
            nodes.append(helper.make_node("Transpose", ["Y"], ["Y_bf"], perm=[2, 0, 1, 3]))
            y = "Y_bf"
        nodes.append(helper.make_node("Flatten", [y], ["flat"], axis=1))
        inits.append(numpy_helper.from_array((rng.standard_normal((steps * d * hidden, 3)) * 0.5)
                                             .astype(np.float32), "head_W"))
        inits.append(numpy_helper.from_array(np.zeros(3, np.float32) if not bias else
                                             (rng.standard_normal(3) * 0.2).astype(np.float32), "head_b"))
        nodes.append(helper.make_node("Gemm", ["flat", "head_W", "head_b"], ["logits"]))
        graph_outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3])]
    graph = helper.make_graph(nodes, "rnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              graph_outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def batch_first_twin(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same recurrent model with ``layout=1`` (onnxruntime runs only layout 0): x [B, T, F], the
    states [B, D, H], the outputs Y [B, T, D, H] and Y_h/Y_c [B, D, H]. Only for ``head=None`` models."""
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    node = twin.graph.node[0]
    for a in node.attribute:
        if a.name == "layout":
            a.i = 1
    for t in twin.graph.initializer:
        if t.name in ("h0", "c0"):
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).transpose(1, 0, 2).copy(), t.name))
    for vi in list(twin.graph.input) + list(twin.graph.output):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        perm = {3: [1, 0, 2], 4: [2, 0, 1, 3]}[len(dims)]
        if vi.name == "x":
            perm = [1, 0, 2]
        for i, p in enumerate(perm):
            vi.type.tensor_type.shape.dim[i].dim_value = dims[p]
    return twin
