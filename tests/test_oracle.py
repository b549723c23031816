"""Tests of the numpy LRP oracle itself (tests/oracle.py).

(a) dense (A, b) builders agree with the reference forwards, and the forwards with onnxruntime;
(b) conservation on positive inputs with zero bias and tiny ε;
(c) hand-computed two-input, one-output examples for every rule;
(d) agreement with Zennit 0.5.1 on torch Linear / Conv2d / ConvTranspose2d / pools, when torch and
    zennit are importable (skipped in CI).
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

try:
    import oracle
except ImportError:  # tests/ became a package
    from tests import oracle


# --------------------------------------------------------------------------------------------
# (a) dense builders vs forwards
# --------------------------------------------------------------------------------------------

@st.composite
def conv_configs(draw):
    nd = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    c_group, m_group = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dil = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(2 * nd))
    spatial = tuple(
        draw(st.integers(max(1, (k - 1) * d + 1 - pads[i] - pads[nd + i]), 6))
        for i, (k, d) in enumerate(zip(kernel, dil))
    )
    seed = draw(st.integers(0, 2**31 - 1))
    return nd, groups, c_group, m_group, kernel, dil, strides, pads, spatial, seed


@settings(max_examples=40, deadline=None)
@given(conv_configs())
def test_conv_dense_matches_direct_forward(cfg):
    nd, groups, c_group, m_group, kernel, dil, strides, pads, spatial, seed = cfg
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, c_group * groups) + spatial)
    W = rng.normal(size=(m_group * groups, c_group) + kernel)
    b = rng.normal(size=m_group * groups)
    kw = dict(strides=strides, pads=pads, dilations=dil, groups=groups)
    y = oracle.conv_nd(x, W, b, **kw)
    A, b_dense, out_shape = oracle.conv_to_dense(W, b, x.shape[1:], **kw)
    assert y.shape[1:] == out_shape
    np.testing.assert_allclose(x.reshape(2, -1) @ A.T + b_dense, y.reshape(2, -1), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(conv_configs(), st.data())
def test_conv_transpose_dense_matches_forward_and_conv_adjoint(cfg, data):
    nd, groups, c_group, m_group, kernel, dil, strides, pads, spatial, seed = cfg
    out_pad = tuple(data.draw(st.integers(0, s - 1)) for s in strides)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, c_group * groups) + spatial)
    W = rng.normal(size=(c_group * groups, m_group) + kernel)
    kw = dict(strides=strides, pads=pads, dilations=dil, groups=groups)
    out_sp = oracle.conv_transpose_output_spatial(spatial, kernel, strides, pads[:nd], pads[nd:], dil, out_pad)
    assume(min(out_sp) >= 1)
    A, b_dense, out_shape = oracle.conv_transpose_to_dense(W, None, x.shape[1:], output_padding=out_pad, **kw)
    y = oracle.conv_transpose_nd(x, W, None, output_padding=out_pad, **kw)
    assert y.shape[1:] == out_shape
    np.testing.assert_allclose(x.reshape(2, -1) @ A.T + b_dense, y.reshape(2, -1), atol=1e-12)
    # ConvTranspose is the adjoint of the Conv with the same weights, strides, pads, dilations.
    A_conv, _, conv_out = oracle.conv_to_dense(W, None, out_shape, **kw)
    assert conv_out == x.shape[1:]
    np.testing.assert_array_equal(A, A_conv.T)


def test_gemm_dense_handles_trans_alpha_beta():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 5))
    B = rng.normal(size=(4, 5))
    C = rng.normal(size=(1, 4))
    A, b = oracle.gemm_to_dense(B, C, alpha=0.5, beta=2.0, transB=1)
    np.testing.assert_allclose(x @ A.T + b, 0.5 * x @ B.T + 2.0 * C, atol=1e-12)
    A, b = oracle.gemm_to_dense(B.T, 3.0)
    np.testing.assert_allclose(x @ A.T + b, x @ B.T + 3.0, atol=1e-12)
    A, b = oracle.matmul_to_dense(B.T)
    np.testing.assert_allclose(x @ A.T + b, x @ B.T, atol=1e-12)
    with pytest.raises(ValueError, match="per output"):
        oracle.gemm_to_dense(B, np.ones(3), transB=1)


@pytest.mark.parametrize("include_pad", [False, True])
def test_avg_pool_dense_matches_forward(include_pad):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 5, 6))
    kw = dict(kernel_shape=(3, 2), strides=(2, 1), pads=(1, 0, 1, 1), count_include_pad=include_pad)
    A, out_shape = oracle.avg_pool_to_dense(x.shape[1:], **kw)
    y = oracle.avg_pool(x, **kw)
    assert y.shape[1:] == out_shape
    np.testing.assert_allclose(x.reshape(2, -1) @ A.T, y.reshape(2, -1), atol=1e-12)


def test_small_dense_helpers():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 4, 2))
    G = oracle.global_avg_pool_to_dense((3, 4, 2))
    np.testing.assert_allclose(G @ x.reshape(-1), x.mean(axis=(1, 2)), atol=1e-12)
    S = oracle.reduce_sum_to_dense((3, 4, 2), axis=1)
    np.testing.assert_allclose(S @ x.reshape(-1), x.sum(axis=1).reshape(-1), atol=1e-12)
    D = oracle.add_to_dense(4, 3)
    parts = rng.normal(size=(3, 4))
    np.testing.assert_allclose(D @ parts.reshape(-1), parts.sum(axis=0), atol=1e-12)
    scale, shift = rng.normal(size=3), rng.normal(size=3)
    A, b = oracle.affine_channel_to_dense(scale, shift, (3, 4, 2))
    expected = scale[:, None, None] * x + shift[:, None, None]
    np.testing.assert_allclose(A @ x.reshape(-1) + b, expected.reshape(-1), atol=1e-12)


def test_max_pool_and_winner_takes_all():
    x = np.array([[[[1.0, 5.0, 2.0], [5.0, 0.0, 3.0], [4.0, 4.0, 9.0]]]])
    y = oracle.max_pool(x, (2, 2), strides=(1, 1))
    np.testing.assert_array_equal(y[0, 0], [[5.0, 5.0], [5.0, 9.0]])
    R = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    routed = oracle.max_pool_wta(x, R, (2, 2), strides=(1, 1))
    # window (0,0) ties between x[0,1] and x[1,0]: the first in row-major order wins.
    np.testing.assert_array_equal(routed[0, 0], [[0.0, 3.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
    assert routed.sum() == R.sum()


# onnxruntime as an outside reference for the numpy forwards (the oracle itself never uses it)

def test_forwards_match_onnxruntime():
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 4, 7, 6)).astype(np.float32)

    W = rng.normal(size=(6, 2, 3, 2)).astype(np.float32)
    b = rng.normal(size=6).astype(np.float32)
    attrs = dict(strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2], group=2)
    expected = _run_single_node_f32("Conv", [x, W, b], attrs)
    got = oracle.conv_nd(x, W, b, strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2], groups=2)
    np.testing.assert_allclose(got, expected, atol=1e-4)

    Wt = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    attrs = dict(strides=[2, 3], pads=[1, 0, 0, 1], dilations=[1, 2], group=2, output_padding=[1, 2])
    expected = _run_single_node_f32("ConvTranspose", [x, Wt], attrs)
    got = oracle.conv_transpose_nd(x, Wt, None, strides=[2, 3], pads=[1, 0, 0, 1], dilations=[1, 2],
                                   groups=2, output_padding=[1, 2])
    np.testing.assert_allclose(got, expected, atol=1e-4)

    for include_pad in (0, 1):
        attrs = dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1], count_include_pad=include_pad)
        expected = _run_single_node_f32("AveragePool", [x], attrs)
        got = oracle.avg_pool(x, (3, 2), strides=(2, 1), pads=(1, 0, 1, 1), count_include_pad=bool(include_pad))
        np.testing.assert_allclose(got, expected, atol=1e-5)

    attrs = dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1], dilations=[1, 2])
    expected = _run_single_node_f32("MaxPool", [x], attrs)
    got = oracle.max_pool(x, (3, 2), strides=(2, 1), pads=(1, 0, 1, 1), dilations=(1, 2))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def _run_single_node_f32(op_type, inputs, attrs, opset=17):
    """Run one ONNX node in float32 on onnxruntime's CPU provider."""
    import onnxruntime as ort
    from onnx import helper, TensorProto

    names = [f"in{i}" for i in range(len(inputs))]
    node = helper.make_node(op_type, names, ["out"], **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape) for n, a in zip(names, inputs)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip(names, inputs)))[0].astype(np.float64)


# --------------------------------------------------------------------------------------------
# (b) conservation
# --------------------------------------------------------------------------------------------

def _layers_without_bias(rng):
    dense = rng.normal(size=(5, 7))
    W = rng.normal(size=(4, 3, 3, 3))
    conv, _, _ = oracle.conv_to_dense(W, None, (3, 5, 5), strides=(2, 1), pads=(1, 1, 1, 0))
    ones, _, _ = oracle.conv_to_dense(np.ones_like(W), None, (3, 5, 5), strides=(2, 1), pads=(1, 1, 1, 0))
    return [(dense, np.ones_like(dense)), (conv, ones)]


@pytest.mark.parametrize("name", ["epsilon", "zplus", "alpha_beta", "gamma", "flat", "wsquare", "zbox"])
def test_rules_conserve_with_zero_bias_on_positive_input(name):
    rng = np.random.default_rng(5)
    for A, ones in _layers_without_bias(rng):
        x = rng.uniform(0.1, 1.0, size=A.shape[1])
        R = rng.normal(size=A.shape[0])
        kw = dict(eps=1e-12)
        if name == "flat":
            kw["ones"] = ones
        if name == "zbox":
            kw.update(low=0.0, high=1.0)
        R_in = oracle.RULES[name](x, A, np.zeros(A.shape[0]), R, **kw)
        assert R_in.shape == x.shape
        np.testing.assert_allclose(R_in.sum(), R.sum(), rtol=1e-8, atol=1e-9)


def test_norm_conserves_on_average_pool():
    rng = np.random.default_rng(6)
    A, out_shape = oracle.avg_pool_to_dense((2, 4, 4), (2, 2), strides=(1, 1), pads=(1, 1, 0, 0))
    x = rng.uniform(0.1, 1.0, size=(2, 4, 4))
    R = rng.normal(size=out_shape)
    R_in = oracle.norm(x, A, R, eps=1e-12)
    assert R_in.shape == x.shape
    np.testing.assert_allclose(R_in.sum(), R.sum(), rtol=1e-9)


def test_bias_breaks_conservation_so_the_check_can_fail():
    rng = np.random.default_rng(7)
    A = rng.normal(size=(5, 7))
    x = rng.uniform(0.1, 1.0, size=7)
    R = rng.uniform(0.5, 1.0, size=5)
    R_in = oracle.epsilon(x, A, np.full(5, 3.0), R, eps=1e-12)
    assert abs(R_in.sum() - R.sum()) > 1e-3


def test_batched_matches_per_sample_and_keeps_shape():
    rng = np.random.default_rng(8)
    W = rng.normal(size=(3, 2, 2, 2))
    b = rng.normal(size=3)
    A, b_dense, out_shape = oracle.conv_to_dense(W, b, (2, 4, 4))
    X = rng.normal(size=(4, 2, 4, 4))
    R = rng.normal(size=(4,) + out_shape)
    out = oracle.batched(oracle.gamma, X, R, A=A, b=b_dense, gamma=0.3)
    assert out.shape == X.shape
    np.testing.assert_array_equal(out[2], oracle.gamma(X[2], A, b_dense, R[2], gamma=0.3))


def test_size_mismatch_is_reported():
    with pytest.raises(ValueError, match="sizes do not fit"):
        oracle.epsilon(np.ones(3), np.ones((2, 4)), None, np.ones(2))


# --------------------------------------------------------------------------------------------
# (c) hand-computed examples: 2 inputs, 1 output
# --------------------------------------------------------------------------------------------

# Example E: x = [2, -1], A = [[1, 3]], b = 0.5, R = 1.
#   contributions z_1 = 2*1 = 2 (x⁺ with W⁺), z_2 = -1*3 = -3 (x⁻ with W⁺); z = 2 - 3 + 0.5 = -0.5
X_E, A_E, B_E = np.array([2.0, -1.0]), np.array([[1.0, 3.0]]), np.array([0.5])
# Example F: x = [2, -1], A = [[1, -3]], b = -0.5, R = 1.
#   contributions 2*1 = 2 (x⁺W⁺), -1*-3 = 3 (x⁻W⁻); z = 2 + 3 - 0.5 = 4.5
X_F, A_F, B_F = np.array([2.0, -1.0]), np.array([[1.0, -3.0]]), np.array([-0.5])
ONE = np.array([1.0])


def test_sign_and_stabiliser():
    # sign(0) = +1, so zero is pushed to +ε
    np.testing.assert_array_equal(oracle.stab(np.array([-2.0, 0.0, 3.0]), 0.5), [-2.5, 0.5, 3.5])


def test_hand_epsilon():
    # LRP-0: R_i = z_i / z = [2 / -0.5, -3 / -0.5] = [-4, 6]
    np.testing.assert_allclose(oracle.epsilon(X_E, A_E, B_E, ONE, eps=0.0), [-4.0, 6.0])
    # ε = 0.5: stab(-0.5) = -0.5 - 0.5 = -1 -> [2 / -1, -3 / -1] = [-2, 3]
    np.testing.assert_allclose(oracle.epsilon(X_E, A_E, B_E, ONE, eps=0.5), [-2.0, 3.0])
    # b = 1 makes z = 0; sign(0) = +1 so stab(0) = +0.5 -> [2 / 0.5, -3 / 0.5] = [4, -6]
    np.testing.assert_allclose(oracle.epsilon(X_E, A_E, [1.0], ONE, eps=0.5), [4.0, -6.0])


def test_hand_zplus():
    # E: x⁺A⁺ = [2, 0], x⁻A⁻ = [0, 0] (A has no negatives); denominator 2 + b⁺ = 2.5 -> [0.8, 0]
    np.testing.assert_allclose(oracle.zplus(X_E, A_E, B_E, ONE, eps=0.0), [0.8, 0.0])
    # F: x⁺A⁺ = [2, 0], x⁻A⁻ = [0, 3]; b⁺ = 0 (negative bias dropped): denominator 5 -> [0.4, 0.6]
    np.testing.assert_allclose(oracle.zplus(X_F, A_F, B_F, ONE, eps=0.0), [0.4, 0.6])


def test_hand_alpha_beta():
    # E: positive part [2, 0] / (2 + b⁺ = 2.5) = [0.8, 0];
    #    negative part x⁺A⁻ + x⁻A⁺ = [0, -3], denominator -3 + b⁻ (= 0) = -3 -> [0, 1]
    #    R = 2 * [0.8, 0] - 1 * [0, 1] = [1.6, -1]
    np.testing.assert_allclose(oracle.alpha_beta(X_E, A_E, B_E, ONE, eps=0.0), [1.6, -1.0])
    # F: positive part [2, 3] / 5 = [0.4, 0.6]; negative numerators are 0 (denominator b⁻ = -0.5)
    #    R = 2 * [0.4, 0.6] = [0.8, 1.2]: nothing negative to subtract, so no conservation
    np.testing.assert_allclose(oracle.alpha_beta(X_F, A_F, B_F, ONE, eps=0.0), [0.8, 1.2])
    # α=1, β=0 is ZPlus
    np.testing.assert_allclose(oracle.alpha_beta(X_E, A_E, B_E, ONE, alpha=1.0, beta=0.0, eps=0.0), [0.8, 0.0])
    with pytest.raises(ValueError):
        oracle.alpha_beta(X_E, A_E, B_E, ONE, alpha=2.0, beta=0.5)


def test_hand_gamma():
    g = 0.5
    # A + γA⁺ = [1.5, 4.5], A + γA⁻ = [1, 3] (A has no negatives)
    # E, z = -0.5 < 0: c = x⁺(A+γA⁻) + x⁻(A+γA⁺) = [2*1, -1*4.5] = [2, -4.5]
    #    d = 2 - 4.5 + b + γb⁻ = -2.5 + 0.5 + 0 = -2 -> R = [2 / -2, -4.5 / -2] = [-1, 2.25]
    np.testing.assert_allclose(oracle.gamma(X_E, A_E, B_E, ONE, gamma=g, eps=0.0), [-1.0, 2.25])
    # b = 2, z = 1 > 0: c = x⁺(A+γA⁺) + x⁻(A+γA⁻) = [2*1.5, -1*3] = [3, -3]
    #    d = 0 + b + γb⁺ = 2 + 1 = 3 -> R = [1, -1]
    np.testing.assert_allclose(oracle.gamma(X_E, A_E, [2.0], ONE, gamma=g, eps=0.0), [1.0, -1.0])
    # b = 1, z = 0: Zennit's masks z > 0 and z < 0 are both false -> no relevance at all
    np.testing.assert_allclose(oracle.gamma(X_E, A_E, [1.0], ONE, gamma=g, eps=0.0), [0.0, 0.0])
    # γ = 0 is LRP-0 (the bias terms b + 0 agree with z)
    np.testing.assert_allclose(oracle.gamma(X_E, A_E, B_E, ONE, gamma=0.0, eps=0.0), [-4.0, 6.0])


def test_hand_flat():
    # all weights one, inputs one, bias dropped: each input gets R / 2
    np.testing.assert_allclose(oracle.flat(X_E, A_E, B_E, ONE, eps=0.0), [0.5, 0.5])
    # with ε = 1: 1 / stab(2) = 1 / 3 each
    np.testing.assert_allclose(oracle.flat(X_E, A_E, B_E, ONE, eps=1.0), [1 / 3, 1 / 3])


def test_hand_wsquare():
    # A² = [1, 9], b² = 0.25 stays in the denominator: 10.25 -> [1/10.25, 9/10.25]
    np.testing.assert_allclose(oracle.wsquare(X_E, A_E, B_E, ONE, eps=0.0), [1 / 10.25, 9 / 10.25])


def test_hand_zbox():
    # F with low = [-2, -3], high = [3, 2]; A⁺ = [1, 0], A⁻ = [0, -3]
    #   c = x·A - low·A⁺ - high·A⁻ = [2 + 2, 3 + 6] = [4, 9]; the bias cancels (b - b⁺ - b⁻ = 0)
    #   R = [4/13, 9/13]
    got = oracle.zbox(X_F, A_F, B_F, ONE, low=[-2.0, -3.0], high=[3.0, 2.0], eps=0.0)
    np.testing.assert_allclose(got, [4 / 13, 9 / 13])
    # scalar bounds broadcast: low = -1, high = 1 -> c = [2 + 1, 3 + 3] = [3, 6] -> [1/3, 2/3]
    got = oracle.zbox(X_F, A_F, [7.0], ONE, low=-1.0, high=1.0, eps=0.0)
    np.testing.assert_allclose(got, [1 / 3, 2 / 3])


def test_hand_norm():
    # sum of two inputs: x = [3, 1], R = 2 -> [3/4 * 2, 1/4 * 2] = [1.5, 0.5]
    np.testing.assert_allclose(oracle.norm([3.0, 1.0], [[1.0, 1.0]], [2.0], eps=0.0), [1.5, 0.5])


# --------------------------------------------------------------------------------------------
# (d) agreement with Zennit 0.5.1 (needs torch + zennit; skipped where they are missing)
# --------------------------------------------------------------------------------------------

def _zennit_relevance(hook, module, x, R):
    import torch

    x_t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    handles = hook.register(module)
    try:
        out = module(x_t)
        (rel,) = torch.autograd.grad(out, x_t, grad_outputs=torch.tensor(R, dtype=torch.float64))
    finally:
        handles.remove()
    return out.detach().numpy(), rel.numpy()


def _torch_layers(torch):
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 4)
    conv = torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2)
    convt = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    layers = []
    for module, in_shape in ((linear, (6,)), (conv, (4, 7, 6)), (convt, (4, 3, 4))):
        module = module.double()
        with torch.no_grad():
            module.bias.normal_()  # mixed-sign, sizeable bias so bias handling is visible
        W = module.weight.detach().numpy()
        b = module.bias.detach().numpy()
        if module is linear:
            A, ones = W, np.ones_like(W)
        elif module is conv:
            kw = dict(strides=(2, 1), pads=(1, 1, 1, 1), dilations=(1, 2), groups=2)
            A, b, _ = oracle.conv_to_dense(W, b, in_shape, **kw)
            ones, _, _ = oracle.conv_to_dense(np.ones_like(W), None, in_shape, **kw)
        else:
            kw = dict(strides=(2, 2), pads=(1, 1, 1, 1), groups=2, output_padding=(1, 1))
            A, b, _ = oracle.conv_transpose_to_dense(W, b, in_shape, **kw)
            ones, _, _ = oracle.conv_transpose_to_dense(np.ones_like(W), None, in_shape, **kw)
        layers.append((type(module).__name__, module, in_shape, A, b, ones))
    return layers


def _zennit_cases(rules, eps):
    """Zennit hook, oracle function and oracle keywords for each rule setting."""
    return {
        "epsilon": (rules.Epsilon(epsilon=eps), oracle.epsilon, {}),
        "zplus": (rules.ZPlus(stabilizer=eps), oracle.zplus, {}),
        "alpha2_beta1": (rules.AlphaBeta(alpha=2.0, beta=1.0, stabilizer=eps), oracle.alpha_beta,
                         {"alpha": 2.0, "beta": 1.0}),
        "alpha3_beta2": (rules.AlphaBeta(alpha=3.0, beta=2.0, stabilizer=eps), oracle.alpha_beta,
                         {"alpha": 3.0, "beta": 2.0}),
        "gamma0.25": (rules.Gamma(gamma=0.25, stabilizer=eps), oracle.gamma, {"gamma": 0.25}),
        "gamma1": (rules.Gamma(gamma=1.0, stabilizer=eps), oracle.gamma, {"gamma": 1.0}),
        "flat": (rules.Flat(stabilizer=eps), oracle.flat, {}),
        "wsquare": (rules.WSquare(stabilizer=eps), oracle.wsquare, {}),
    }


ZENNIT_MAX_DIFF = {}


@pytest.mark.parametrize("eps", [1e-6, 0.5])
def test_oracle_matches_zennit(eps):
    torch = pytest.importorskip("torch")
    rules = pytest.importorskip("zennit.rules")
    rng = np.random.default_rng(9)
    for layer_name, module, in_shape, A, b, ones in _torch_layers(torch):
        x = rng.normal(size=(3,) + in_shape)
        out_shape = module(torch.tensor(x)).shape
        R = rng.normal(size=out_shape)
        for name, (hook, rule, kw) in _zennit_cases(rules, eps).items():
            _, expected = _zennit_relevance(hook, module, x, R)
            if rule is oracle.flat:
                kw = dict(kw, ones=ones)
            got = oracle.batched(rule, x, R.reshape(3, -1), A=A, b=b, eps=eps, **kw)
            _record(f"{layer_name}/{name}/eps={eps}", got, expected)
        # ZBox with per-channel bounds (a scalar for Linear)
        low = -rng.uniform(0.5, 2.0, size=(1, in_shape[0]) + (1,) * (len(in_shape) - 1))
        high = rng.uniform(0.5, 2.0, size=low.shape)
        hook = rules.ZBox(low=torch.tensor(low), high=torch.tensor(high), stabilizer=eps)
        _, expected = _zennit_relevance(hook, module, x, R)
        got = oracle.batched(oracle.zbox, x, R.reshape(3, -1), A=A, b=b, low=low, high=high, eps=eps)
        _record(f"{layer_name}/zbox/eps={eps}", got, expected)


@pytest.mark.parametrize("eps", [1e-6, 0.5])
def test_oracle_norm_matches_zennit(eps):
    torch = pytest.importorskip("torch")
    rules = pytest.importorskip("zennit.rules")
    layer = pytest.importorskip("zennit.layer")
    rng = np.random.default_rng(10)
    x = rng.normal(size=(3, 2, 5, 5))
    for include_pad in (False, True):
        pool = torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=include_pad)
        A, out_shape = oracle.avg_pool_to_dense((2, 5, 5), (3, 3), strides=(2, 2), pads=(1, 1, 1, 1),
                                                count_include_pad=include_pad)
        R = rng.normal(size=(3,) + out_shape)
        _, expected = _zennit_relevance(rules.Norm(stabilizer=eps), pool, x, R)
        got = oracle.batched(oracle.norm, x, R, A=A, eps=eps)
        _record(f"AvgPool2d(pad={include_pad})/norm/eps={eps}", got, expected)
    stacked = rng.normal(size=(3, 4, 2))
    A = oracle.reduce_sum_to_dense((4, 2), axis=-1)
    R = rng.normal(size=(3, 4))
    _, expected = _zennit_relevance(rules.Norm(stabilizer=eps), layer.Sum(dim=-1), stacked, R)
    got = oracle.batched(oracle.norm, stacked, R, A=A, eps=eps)
    _record(f"Sum/norm/eps={eps}", got, expected)


def _record(label, got, expected):
    diff = float(np.max(np.abs(got - expected)))
    ZENNIT_MAX_DIFF[label] = diff
    print(f"oracle vs zennit {label}: max |diff| = {diff:.3e} (max |R| = {np.max(np.abs(expected)):.3e})")
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-10, err_msg=label)
