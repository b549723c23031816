"""Small ONNX models built with onnx.helper for the graph, explainer and error tests (no torch)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


def vi(name: str, shape, elem=FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def make_model(nodes, inputs, outputs, inits: dict | None = None, opset: int = OPSET,
               ir_version: int = 8, check: bool = True) -> onnx.ModelProto:
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(list(nodes), "test", list(inputs), list(outputs), initializer=tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    if check:
        onnx.checker.check_model(model)
    return model


def randn(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def run(model: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def cnn(classes: int = 5, softmax: bool = True, batch="N", seed: int = 0) -> onnx.ModelProto:
    """x (N,3,8,8) -> Conv -> BN -> Relu -> MaxPool -> Conv+bias -> Relu -> GlobalAveragePool ->
    Flatten -> Gemm -> [Softmax]. The BN folds, the Softmax is stripped."""
    r = np.random.default_rng(seed)
    inits = {
        "w1": r.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.5,
        "bn_s": r.uniform(0.5, 1.5, 4).astype(np.float32), "bn_b": r.standard_normal(4).astype(np.float32) * 0.1,
        "bn_m": r.standard_normal(4).astype(np.float32) * 0.1, "bn_v": r.uniform(0.5, 2, 4).astype(np.float32),
        "w2": r.standard_normal((6, 4, 3, 3)).astype(np.float32) * 0.5,
        "b2": r.standard_normal(6).astype(np.float32) * 0.1,
        "wf": r.standard_normal((classes, 6)).astype(np.float32),
        "bf": r.standard_normal(classes).astype(np.float32) * 0.1,
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], name="fc", transB=1),
    ]
    out = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=1))
        out = "prob"
    return make_model(nodes, [vi("x", [batch, 3, 8, 8])], [vi(out, [batch, classes])], inits)


def mlp(features: int = 6, hidden: int = 8, classes: int = 4, seed: int = 0) -> onnx.ModelProto:
    """x (N, features) -> MatMul + Add -> Relu -> Gemm (a torch-style dense pair and a Gemm)."""
    r = np.random.default_rng(seed)
    inits = {"w1": r.standard_normal((features, hidden)).astype(np.float32),
             "b1": r.standard_normal(hidden).astype(np.float32) * 0.1,
             "w2": r.standard_normal((classes, hidden)).astype(np.float32),
             "b2": r.standard_normal(classes).astype(np.float32) * 0.1}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
             helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
             helper.make_node("Relu", ["h1"], ["h"], name="relu"),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], name="fc2", transB=1)]
    return make_model(nodes, [vi("x", ["N", features])], [vi("y", ["N", classes])], inits)


def flatten_by_shape(classes: int = 3, seed: int = 0) -> onnx.ModelProto:
    """What torch exports for ``x.view(x.size(0), -1)``: Shape -> Gather -> Unsqueeze -> Concat ->
    Reshape, then a Gemm. The integer subgraph must carry no relevance."""
    r = np.random.default_rng(seed)
    inits = {"idx0": np.array(0, np.int64), "axes0": np.array([0], np.int64),
             "minus1": np.array([-1], np.int64),
             "w1": r.standard_normal((2, 3, 3, 3)).astype(np.float32),
             "wf": r.standard_normal((classes, 2 * 4 * 4)).astype(np.float32),
             "bf": r.standard_normal(classes).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "idx0"], ["batch"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"], name="unsqueeze"),
        helper.make_node("Concat", ["batch1", "minus1"], ["target_shape"], name="concat", axis=0),
        helper.make_node("Reshape", ["r", "target_shape"], ["flat"], name="reshape"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    return make_model(nodes, [vi("x", ["N", 3, 4, 4])], [vi("y", ["N", classes])], inits)
