"""Small ONNX models (built with onnx.helper) whose attributions and metric values are known, for
the attribution, metrics and evaluate tests; with float64 numpy forward passes as oracles."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(nodes, sample_shape, inits: dict, classes: int, batch="N"):
    graph = helper.make_graph(
        nodes, "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *sample_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=[numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def linear(weight, bias, sample_shape, batch="N"):
    """logits = flatten(x) @ weight + bias; weight (F, C); ``batch`` an int bakes in the batch size."""
    weight = np.asarray(weight, np.float32)
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "W", "b"], ["logits"])]
    return _model(nodes, sample_shape, {"W": weight, "b": np.asarray(bias, np.float32)}, weight.shape[1], batch)


def region_reader(region, channels: int = 1, classes: int = 2):
    """A model that only reads ``region`` (a boolean (H, W) map): a 1×1 identity convolution and a
    Relu (so that the first layer, which LRP composites treat specially, is per pixel), then
    class 0 = the sum over the region (all channels), the other classes = 0.1 × the same (class
    0 is predicted for positive x). For x ≥ 0 the model is f₀(x) = Σ_region x."""
    region = np.asarray(region, bool)
    per_feature = np.broadcast_to(region, (channels,) + region.shape).reshape(-1).astype(np.float32)
    weight = np.stack([per_feature] + [0.1 * per_feature] * (classes - 1), axis=1)
    inits = {"eye": np.eye(channels).reshape(channels, channels, 1, 1), "W": weight, "b": np.zeros(classes)}
    nodes = [helper.make_node("Conv", ["x", "eye"], ["c"]), helper.make_node("Relu", ["c"], ["h"]),
             helper.make_node("Flatten", ["h"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "W", "b"], ["logits"])]
    return _model(nodes, (channels,) + region.shape, inits, classes)


def relu_mlp(sample_shape, hidden: int, classes: int, seed: int):
    """Flatten → Gemm → Relu → Gemm → Relu → Gemm, seeded weights (3 dense layers)."""
    rng = np.random.default_rng(seed)
    f = int(np.prod(sample_shape))
    inits = {"W1": rng.standard_normal((f, hidden)) / np.sqrt(f), "b1": 0.1 * rng.standard_normal(hidden),
             "W2": rng.standard_normal((hidden, hidden)) / np.sqrt(hidden), "b2": 0.1 * rng.standard_normal(hidden),
             "W3": rng.standard_normal((hidden, classes)) / np.sqrt(hidden), "b3": 0.1 * rng.standard_normal(classes)}
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "W1", "b1"], ["z1"]), helper.make_node("Relu", ["z1"], ["h1"]),
             helper.make_node("Gemm", ["h1", "W2", "b2"], ["z2"]), helper.make_node("Relu", ["z2"], ["h2"]),
             helper.make_node("Gemm", ["h2", "W3", "b3"], ["logits"])]
    return _model(nodes, sample_shape, inits, classes)


class SmallCNN:
    """x (N, 2, 6, 6) → Conv 3×3 pad 1 → Relu → MaxPool 2 → [Conv 1×1 → Tanh] + skip → Flatten →
    Gemm (36 → 5). ``forward`` is the same network in float64 numpy (the finite-difference oracle)."""

    SAMPLE = (2, 6, 6)
    CLASSES = 5

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.w1 = rng.standard_normal((4, 2, 3, 3)) * 0.5
        self.b1 = rng.standard_normal(4) * 0.1
        self.w2 = rng.standard_normal((4, 4, 1, 1)) * 0.5
        self.b2 = rng.standard_normal(4) * 0.1
        self.w3 = rng.standard_normal((36, self.CLASSES)) * 0.3
        self.b3 = rng.standard_normal(self.CLASSES) * 0.1

    def onnx(self):
        nodes = [
            helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"]),
            helper.make_node("Tanh", ["c2"], ["t2"]),
            helper.make_node("Add", ["p1", "t2"], ["s"]),
            helper.make_node("Flatten", ["s"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"]),
        ]
        inits = {k: getattr(self, k) for k in ("w1", "b1", "w2", "b2", "w3", "b3")}
        return _model(nodes, self.SAMPLE, inits, self.CLASSES)

    def forward(self, x):
        x = np.asarray(x, np.float64)
        n = len(x)
        pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        c1 = np.zeros((n, 4, 6, 6))
        for i in range(3):
            for j in range(3):
                c1 += np.einsum("nchw,oc->nohw", pad[:, :, i:i + 6, j:j + 6], self.w1[:, :, i, j])
        c1 += self.b1[None, :, None, None]
        r1 = np.maximum(c1, 0)
        p1 = r1.reshape(n, 4, 3, 2, 3, 2).max(axis=(3, 5))
        c2 = np.einsum("nchw,oc->nohw", p1, self.w2[:, :, 0, 0]) + self.b2[None, :, None, None]
        s = p1 + np.tanh(c2)
        return s.reshape(n, -1) @ self.w3 + self.b3


def sign_flip_reader(sample_shape, classes: int, seed: int):
    """logits = w ⊗ Σ_i c_i x_i (Flatten → Mul c → ReduceSum → Gemm (1 → classes)): every class
    reads the same weighted sum h, so the explanation of any class is c ⊙ x times the sign of its
    logit. The Gemm is the only layer with weights; re-initialising it gives the target a
    weight of random sign: the explanation becomes a copy of the original, sign-flipped when the
    new weight's sign differs (the failure Sixt et al. 2020 describe for z⁺-type LRP)."""
    rng = np.random.default_rng(seed)
    f = int(np.prod(sample_shape))
    inits = {"c": rng.uniform(0.5, 1.5, f), "axes": np.array([1]), "W": rng.uniform(0.5, 1.5, (1, classes)),
             "b": np.zeros(classes)}
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1), helper.make_node("Mul", ["flat", "c"], ["z"]),
             helper.make_node("ReduceSum", ["z", "axes"], ["h"], keepdims=1),
             helper.make_node("Gemm", ["h", "W", "b"], ["logits"])]
    model = _model(nodes, sample_shape, {k: v for k, v in inits.items() if k != "axes"}, classes)
    model.graph.initializer.append(numpy_helper.from_array(inits["axes"].astype(np.int64), "axes"))
    return model


def orthogonal_mlp(sample_shape, classes: int, seed: int):
    """Flatten → Gemm (F → F, a random orthogonal matrix Q) → Gemm (F → classes, Gaussian W), no
    biases: the gradient of class t is Q w_t. Re-initialising W gives Q w'_t with w'_t
    independent of w_t, and Q keeps them as unrelated as w_t and w'_t: the explanation becomes
    unrelated to the original."""
    rng = np.random.default_rng(seed)
    f = int(np.prod(sample_shape))
    q, _ = np.linalg.qr(rng.standard_normal((f, f)))
    inits = {"Q": q, "bq": np.zeros(f), "W": rng.standard_normal((f, classes)), "b": np.zeros(classes)}
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "Q", "bq"], ["h"]),
             helper.make_node("Gemm", ["h", "W", "b"], ["logits"])]
    return _model(nodes, sample_shape, inits, classes)
