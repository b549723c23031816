"""Conservation: with Epsilon ε=0 and no biases, input relevance sums to the target logit.

Property tests over random small ReLU networks (convolutions, pools, residual sums, dense
layers) built with onnx.helper.
"""
from __future__ import annotations

import numpy as np
import onnx
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from onnx_lrp.composites import EpsilonComposite
from onnx_lrp.rules import Norm


class NetBuilder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, hint):
        self.n += 1
        return f"{hint}{self.n}"

    def weight(self, shape):
        name = self.name("w")
        self.inits.append(numpy_helper.from_array(self.rng.standard_normal(shape).astype(np.float32), name))
        return name

    def op(self, op_type, inputs, **attrs):
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def model(self, x_shape, out):
        graph = helper.make_graph(self.nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                   ["N"] + list(x_shape))],
                                  [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", None])], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@st.composite
def conv_nets(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    b = NetBuilder(seed)
    channels, size = draw(st.integers(1, 3)), draw(st.integers(6, 10))
    t, c = "x", channels
    for _ in range(draw(st.integers(1, 3))):
        out_c, k = draw(st.integers(2, 5)), draw(st.sampled_from([1, 3]))
        stride = draw(st.sampled_from([1, 2]))
        conv = b.op("Conv", [t, b.weight((out_c, c, k, k))], pads=[k // 2] * 4, strides=[stride, stride])
        t, c = b.op("Relu", [conv]), out_c
        size = (size + 2 * (k // 2) - k) // stride + 1
        if draw(st.booleans()):  # residual block
            inner = b.op("Relu", [b.op("Conv", [t, b.weight((c, c, 3, 3))], pads=[1, 1, 1, 1])])
            t = b.op("Add", [t, inner])
        pool = draw(st.sampled_from(["none", "max", "avg"]))
        if pool != "none" and size >= 2:
            t = b.op("MaxPool" if pool == "max" else "AveragePool", [t], kernel_shape=[2, 2], strides=[2, 2])
            size //= 2
    head = draw(st.sampled_from(["flatten", "gap"]))
    t = b.op("Flatten", [t]) if head == "flatten" else b.op("Flatten", [b.op("GlobalAveragePool", [t])])
    features = c * size * size if head == "flatten" else c
    hidden = b.op("Relu", [b.op("Gemm", [t, b.weight((6, features))], transB=1)])
    logits = b.op("Gemm", [hidden, b.weight((4, 6))], transB=1)
    return b.model((channels, 0, 0), logits), channels, seed


def _fix_input(model, shape):
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims[1:], shape):
        d.dim_value = v
    return model


LRP0 = EpsilonComposite(epsilon=0.0, type_map={"Add": Norm(0.0), "AveragePool": Norm(0.0),
                                               "GlobalAveragePool": Norm(0.0)})


@settings(max_examples=25, deadline=None)
@given(conv_nets(), st.integers(6, 10), st.integers(1, 3))
def test_lrp0_conserves_on_bias_free_relu_nets(net, size, batch):
    model, channels, seed = net
    model = _fix_input(model, (channels, size, size))
    try:
        explainer = onnx_lrp.Explainer(model, composite=LRP0)
        x = np.random.default_rng(seed).standard_normal((batch, channels, size, size)).astype(np.float32)
        res = explainer.explain(x)
    except onnx_lrp.InvalidInput:
        return  # the drawn layers shrink this input size to nothing
    flat = res.relevance.reshape(batch, -1).astype(np.float64)
    # float32 rounding grows with the terms being summed, not with their (possibly tiny) sum: a
    # logit of 0.004 made of contributions of ±1 is off by ~1e-6 however exact the rules are
    tolerance = 1e-4 * np.abs(res.target_output) + 1e-6 * np.abs(flat).sum(axis=1)
    assert np.all(np.abs(flat.sum(axis=1) - res.target_output) <= tolerance)


def test_bias_breaks_conservation():
    """The check above can fail: a bias absorbs relevance under Epsilon."""
    b = NetBuilder(0)
    bias = b.name("bias")
    b.inits.append(numpy_helper.from_array(np.full(4, 5.0, np.float32), bias))
    logits = b.op("Gemm", [b.op("Relu", [b.op("Gemm", ["x", b.weight((6, 5))], transB=1)]), b.weight((4, 6)), bias],
                  transB=1)
    model = b.model((5,), logits)
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    res = onnx_lrp.Explainer(model, composite=LRP0).explain(x)
    total = res.relevance.sum(axis=1)
    assert not np.allclose(total, res.target_output, rtol=1e-2)


def test_lrp0_conserves_through_a_float16_round_trip():
    """x -> Cast(float16) -> Cast(float32) -> Gemm: relevance is carried in float32 through the
    Casts' backward pass, so it sums to the logit as closely as an all-float32 network."""
    b = NetBuilder(1)
    half = b.op("Cast", ["x"], to=TensorProto.FLOAT16)
    logits = b.op("Gemm", [b.op("Cast", [half], to=TensorProto.FLOAT), b.weight((4, 64))], transB=1)
    model = b.model((64,), logits)
    x = np.random.default_rng(2).standard_normal((8, 64)).astype(np.float32)
    res = onnx_lrp.Explainer(model, composite=LRP0).explain(x)
    total = res.relevance.sum(axis=1, dtype=np.float64)
    np.testing.assert_allclose(total, res.target_output, rtol=1e-5)
