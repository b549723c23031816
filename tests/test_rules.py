"""Every rule, compiled to ONNX, against the float64 dense-Jacobian oracle in tests/oracle.py.

Layers have nonzero biases and the inputs negative values, so every sign branch of every rule
is exercised.
"""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from onnx_lrp import rules
from rule_harness import run_rule, single_node_model

RNG = np.random.default_rng(1234)
LOW = np.array([-1.5, -2.0, -1.0], np.float32).reshape(1, 3, 1, 1)
HIGH = np.array([2.0, 1.5, 2.5], np.float32).reshape(1, 3, 1, 1)


def _layers():
    """(id, model, x, dense (A, b) builder for one sample, low, high)."""
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(4).astype(np.float32)
    conv_attrs = dict(pads=[1, 0, 1, 2], strides=[2, 1])
    yield ("conv2d", single_node_model("Conv", ["x", "W", "B"], {"W": w, "B": b}, 4, **conv_attrs),
           RNG.standard_normal((2, 3, 5, 6)),
           lambda: oracle.conv_to_dense(w, b, (3, 5, 6), strides=[2, 1], pads=[1, 0, 1, 2])[:2], LOW, HIGH)
    wg = RNG.standard_normal((6, 1, 3)).astype(np.float32)
    bg = RNG.standard_normal(6).astype(np.float32)
    yield ("conv1d_depthwise", single_node_model("Conv", ["x", "W", "B"], {"W": wg, "B": bg}, 3, group=3,
                                                 pads=[1, 1], dilations=[2]),
           RNG.standard_normal((2, 3, 7)),
           lambda: oracle.conv_to_dense(wg, bg, (3, 7), pads=[1, 1], dilations=[2], groups=3)[:2],
           LOW.reshape(1, 3, 1), HIGH.reshape(1, 3, 1))
    wt = RNG.standard_normal((3, 2, 3, 3)).astype(np.float32)
    bt = RNG.standard_normal(2).astype(np.float32)
    yield ("conv_transpose", single_node_model("ConvTranspose", ["x", "W", "B"], {"W": wt, "B": bt}, 4,
                                               strides=[2, 2], pads=[1, 1, 0, 0], output_padding=[1, 0]),
           RNG.standard_normal((2, 3, 3, 4)),
           lambda: oracle.conv_transpose_to_dense(wt, bt, (3, 3, 4), strides=[2, 2], pads=[1, 1, 0, 0],
                                                  output_padding=[1, 0])[:2], LOW, HIGH)
    wd = RNG.standard_normal((5, 7)).astype(np.float32)
    bd = RNG.standard_normal(5).astype(np.float32)
    yield ("gemm", single_node_model("Gemm", ["x", "W", "B"], {"W": wd, "B": bd}, 2, transB=1, alpha=0.5),
           RNG.standard_normal((3, 7)), lambda: oracle.gemm_to_dense(wd, bd, alpha=0.5, transB=1),
           -2.0, 2.0)


LAYERS = list(_layers())

RULE_CASES = {
    "epsilon": (lambda lo, hi: rules.Epsilon(1e-3), lambda x, A, b, R, lo, hi, ones: oracle.epsilon(x, A, b, R, 1e-3)),
    "zplus": (lambda lo, hi: rules.ZPlus(), lambda x, A, b, R, lo, hi, ones: oracle.zplus(x, A, b, R)),
    "alpha_beta": (lambda lo, hi: rules.AlphaBeta(2.0, 1.0),
                   lambda x, A, b, R, lo, hi, ones: oracle.alpha_beta(x, A, b, R, 2.0, 1.0)),
    "alpha_beta_1_0": (lambda lo, hi: rules.AlphaBeta(1.0, 0.0),
                       lambda x, A, b, R, lo, hi, ones: oracle.alpha_beta(x, A, b, R, 1.0, 0.0)),
    "gamma": (lambda lo, hi: rules.Gamma(0.25), lambda x, A, b, R, lo, hi, ones: oracle.gamma(x, A, b, R, 0.25)),
    "gamma_1": (lambda lo, hi: rules.Gamma(1.0), lambda x, A, b, R, lo, hi, ones: oracle.gamma(x, A, b, R, 1.0)),
    "flat": (lambda lo, hi: rules.Flat(), lambda x, A, b, R, lo, hi, ones: oracle.flat(x, A, b, R, ones=ones)),
    "wsquare": (lambda lo, hi: rules.WSquare(), lambda x, A, b, R, lo, hi, ones: oracle.wsquare(x, A, b, R)),
    "zbox": (lambda lo, hi: rules.ZBox(lo, hi), lambda x, A, b, R, lo, hi, ones: oracle.zbox(x, A, b, R, lo, hi)),
}


def _ones_matrix(layer_id, A):
    """The layer's dense matrix with every weight set to one (Flat's receptive fields)."""
    return (A != 0).astype(np.float64) if layer_id != "gemm" else np.ones_like(A)


@pytest.mark.parametrize("rule_name", list(RULE_CASES))
@pytest.mark.parametrize("layer", LAYERS, ids=[layer[0] for layer in LAYERS])
def test_rule_matches_oracle(layer, rule_name):
    layer_id, model, x, dense, low, high = layer
    x = x.astype(np.float32)
    A, b = dense()
    R = RNG.standard_normal((len(x), A.shape[0])).astype(np.float32)
    make_rule, reference = RULE_CASES[rule_name]
    out_shape_R = R.reshape((len(x),) + _out_shape(model, x))
    got = run_rule(model, make_rule(low, high), x, out_shape_R)[0]
    ones = _ones_matrix(layer_id, A)
    for i in range(len(x)):
        want = reference(x[i], A, b, R[i], low, high, ones)
        scale = np.abs(want).max()
        np.testing.assert_allclose(got[i], want, rtol=0, atol=2e-5 * scale + 1e-7,
                                   err_msg=f"{rule_name} on {layer_id}, sample {i}")


def _out_shape(model, x):
    import onnxruntime as ort
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0].shape[1:]


def test_flat_uses_dense_receptive_field_with_zero_weights():
    """Flat spreads over the receptive field even where a weight is exactly zero."""
    w = np.zeros((1, 1, 3), np.float32)
    w[0, 0, 1] = 2.0
    model = single_node_model("Conv", ["x", "W"], {"W": w}, 3, pads=[1, 1])
    x = RNG.standard_normal((1, 1, 4)).astype(np.float32)
    R = np.ones((1, 1, 4), np.float32)
    got = run_rule(model, rules.Flat(), x, R)[0]
    A1, _, _ = oracle.conv_to_dense(np.ones_like(w), None, (1, 4), pads=[1, 1])
    np.testing.assert_allclose(got[0].ravel(), oracle.flat(x[0], A1, None, R[0], ones=A1).ravel(), rtol=1e-5)
    assert np.isclose(got.sum(), 4.0, rtol=1e-5)


def test_norm_on_average_pool_matches_oracle():
    model = single_node_model("AveragePool", ["x"], {}, 4, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    x = RNG.standard_normal((2, 2, 5, 5)).astype(np.float32)
    A, _ = oracle.avg_pool_to_dense((2, 5, 5), [3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    R = RNG.standard_normal((2, 2, 3, 3)).astype(np.float32)
    got = run_rule(model, rules.Norm(), x, R)[0]
    for i in range(2):
        np.testing.assert_allclose(got[i], oracle.norm(x[i], A, R[i]), atol=1e-5 * np.abs(got[i]).max())


def test_norm_on_residual_add_splits_by_contribution():
    from onnx import TensorProto, helper, numpy_helper
    scale = RNG.standard_normal((1, 3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Mul", ["x", "s"], ["a"], name="scale"),
             helper.make_node("Add", ["x", "a"], ["y"], name="node")]
    graph = helper.make_graph(nodes, "res", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None] * 4)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
                              [numpy_helper.from_array(scale, "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = RNG.standard_normal((2, 3, 2, 2)).astype(np.float32)
    R = RNG.standard_normal((2, 3, 2, 2)).astype(np.float32)
    r_x, r_a = run_rule(model, rules.Norm(), x, R)
    a = x * scale
    A = oracle.add_to_dense(x[0].size)
    for i in range(2):
        want = oracle.norm(np.concatenate([x[i].ravel(), a[i].ravel()]), A, R[i])
        np.testing.assert_allclose(np.concatenate([r_x[i].ravel(), r_a[i].ravel()]), want,
                                   atol=1e-5 * np.abs(want).max())


def test_alpha_beta_rejects_non_conserving_parameters():
    from onnx_lrp import CompositeError
    with pytest.raises(CompositeError, match="alpha - beta = 1"):
        rules.AlphaBeta(alpha=2.0, beta=2.0)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("rule_name", ["gamma", "gamma_1", "zplus", "alpha_beta"])
def test_rules_on_nonnegative_inputs_match_oracle(rule_name, stride):
    """Inputs known to be >= 0 (after a ReLU) take shorter code paths (the W⁺ pass in the model's own
    Conv, one VJP over stacked weights: a Conv at stride 1, a ConvTranspose at 2); they must agree too."""
    from onnx import TensorProto, helper, numpy_helper
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = RNG.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "W", "B"], ["y"], name="node", pads=[1, 1, 1, 1], strides=[stride] * 2)]
    graph = helper.make_graph(nodes, "relu_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None] * 4)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
                              [numpy_helper.from_array(w, "W"), numpy_helper.from_array(bias, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = RNG.standard_normal((2, 3, 5, 5)).astype(np.float32)
    A, b = oracle.conv_to_dense(w, bias, (3, 5, 5), pads=[1, 1, 1, 1], strides=[stride] * 2)[:2]
    side = 5 if stride == 1 else 3
    R = RNG.standard_normal((2, 4, side, side)).astype(np.float32)
    make_rule, reference = RULE_CASES[rule_name]
    got = run_rule(model, make_rule(None, None), x, R)[0]
    r = np.maximum(x, 0)
    for i in range(2):
        want = reference(r[i], A, b, R[i].ravel(), None, None, None)
        np.testing.assert_allclose(got[i], want, rtol=0, atol=2e-5 * np.abs(want).max() + 1e-7)
