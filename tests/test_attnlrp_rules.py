"""AttnLRP and CP-LRP rules against slow float64 numpy oracles written from the papers' formulas
(Achtibat et al. 2024; Ali et al. 2022), independent of onnx_lrp: explicit products and sums.

Each case runs one rule on one node with an arbitrary relevance R at its output
(tests/rule_harness.py) and compares per element with the oracle in float64.
"""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from onnx_lrp import rules
from onnx_lrp.errors import CompositeError

from rule_harness import run_rule

RNG = np.random.default_rng(2024)
RTOL = 1e-4  # float32 graph vs float64 oracle; the denominators are kept away from 0 below


def _model(nodes, consts, x_shape, out="y"):
    graph = helper.make_graph(
        nodes, "attn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape[1:]])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None] * len(x_shape))],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _assert_close(actual, expected):
    expected = np.asarray(expected, np.float64)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * np.abs(expected).max())


# --- oracles -----------------------------------------------------------------------------------

def oracle_uniform_matmul(a, b, R):
    """Every product a[..., i, k]·b[..., k, j] gets R_ij · (its share of O_ij); each factor half."""
    z = a[..., :, :, None] * b[..., None, :, :]          # (..., i, k, j)
    O = z.sum(axis=-2)                                   # (..., i, j)
    share = z * (R / O)[..., :, None, :] / 2.0
    return share.sum(axis=-1), share.sum(axis=-3)


def oracle_softmax(x, R):
    s = np.exp(x - x.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    return x * (R - s * R.sum(-1, keepdims=True))


def oracle_detached_layer_norm(x, gamma, beta, eps_ln, R):
    """LRP-0 on y = M x + β with M = diag(γ/σ)·(I − 11ᵀ/n), σ a constant (per row)."""
    out = np.zeros_like(x)
    n = x.shape[-1]
    for idx in np.ndindex(x.shape[:-1]):
        row = x[idx]
        sigma = np.sqrt(((row - row.mean()) ** 2).mean() + eps_ln)
        M = (gamma / sigma)[:, None] * (np.eye(n) - np.ones((n, n)) / n)
        y = M @ row + beta
        contrib = M * row[None, :]                      # (out j, in i)
        out[idx] = (contrib * (R[idx] / y)[:, None]).sum(axis=0)
    return out


# --- bilinear products ---------------------------------------------------------------------------

def _attention_scores(shape):
    """x (N, h, t, d): y = MatMul(x·c, xᵀ), a Q Kᵀ of two activations."""
    c = RNG.uniform(0.5, 1.5, shape[1:]).astype(np.float32)
    nodes = [helper.make_node("Mul", ["x", "c"], ["q"], name="q"),
             helper.make_node("Transpose", ["x"], ["k"], name="k", perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["q", "k"], ["y"], name="node")]
    return _model(nodes, {"c": c}, shape), c


def test_uniform_on_matmul_of_two_activations():
    shape = (2, 2, 3, 4)
    model, c = _attention_scores(shape)
    x = RNG.uniform(0.5, 1.5, shape).astype(np.float32)  # positive: O far from 0
    R = RNG.standard_normal((2, 2, 3, 3))
    r_q, r_k = run_rule(model, rules.Uniform(), x, R)
    q, k = x.astype(np.float64) * c, np.swapaxes(x.astype(np.float64), -1, -2)
    want_q, want_k = oracle_uniform_matmul(q, k, R)
    _assert_close(r_q, want_q)
    _assert_close(r_k, want_k)
    _assert_close(r_q.sum() + r_k.sum(), R.sum())  # conserving: the halves add up


def test_uniform_on_einsum_equals_the_matmul_oracle():
    shape = (2, 2, 3, 4)
    c = RNG.uniform(0.5, 1.5, shape[1:]).astype(np.float32)
    nodes = [helper.make_node("Mul", ["x", "c"], ["q"], name="q"),
             helper.make_node("Einsum", ["q", "x"], ["y"], name="node", equation="bhid,bhjd->bhij")]
    x = RNG.uniform(0.5, 1.5, shape).astype(np.float32)
    R = RNG.standard_normal((2, 2, 3, 3))
    r_q, r_k = run_rule(_model(nodes, {"c": c}, shape), rules.Uniform(), x, R)
    want_q, want_kt = oracle_uniform_matmul(x.astype(np.float64) * c, np.swapaxes(x.astype(np.float64), -1, -2), R)
    _assert_close(r_q, want_q)
    _assert_close(r_k, np.swapaxes(want_kt, -1, -2))


def _context(shape):
    """x (N, h, t, t) scores; y = MatMul(Softmax(x), x·c): A·V with A the probabilities."""
    c = RNG.uniform(0.5, 1.5, shape[1:]).astype(np.float32)
    nodes = [helper.make_node("Softmax", ["x"], ["a"], name="softmax", axis=-1),
             helper.make_node("Mul", ["x", "c"], ["v"], name="v"),
             helper.make_node("MatMul", ["a", "v"], ["y"], name="node")]
    return _model(nodes, {"c": c}, shape), c


def test_cp_lrp_gives_the_values_everything_and_the_probabilities_nothing():
    shape = (2, 2, 3, 3)
    model, c = _context(shape)
    x = RNG.uniform(0.5, 1.5, shape).astype(np.float32)
    R = RNG.standard_normal(shape)
    outs = run_rule(model, rules.Epsilon(0.0), x, R)
    assert len(outs) == 1, "the probabilities get no relevance (None is dropped)"
    x64 = x.astype(np.float64)
    a = np.exp(x64) / np.exp(x64).sum(-1, keepdims=True)
    v = x64 * c
    z = a[..., :, :, None] * v[..., None, :, :]          # (n, h, i, k, j)
    want_v = (z * (R / z.sum(-2))[..., :, None, :]).sum(axis=-3)
    _assert_close(outs[0], want_v)


def test_signal_of_attention_context_is_the_values():
    model, _ = _context((1, 2, 3, 3))
    g = onnx_lrp.Explainer(model).graph((2, 3, 3))
    from onnx_lrp.ops.registry import handler_for
    node = g.nodes["node"]
    assert handler_for(node, g).signal(node, g) == 1


def test_epsilon_on_scores_without_a_signal_asks_for_a_rule():
    model, _ = _attention_scores((1, 2, 3, 4))
    x = RNG.uniform(0.5, 1.5, (1, 2, 3, 4)).astype(np.float32)
    with pytest.raises(CompositeError, match="signal"):
        run_rule(model, rules.Epsilon(0.0), x, np.ones((1, 2, 3, 3)))


# --- softmax ---------------------------------------------------------------------------------------

def _softmax_model(shape, mask=None):
    nodes, consts, src = [], {}, "x"
    if mask is not None:
        nodes.append(helper.make_node("Add", ["x", "mask"], ["xm"], name="mask"))
        consts["mask"], src = mask, "xm"
    nodes += [helper.make_node("Softmax", [src], ["s"], name="node", axis=-1),
              helper.make_node("Mul", ["s", "two"], ["y"], name="after")]
    consts["two"] = np.float32(2.0)
    return _model(nodes, consts, shape)


def test_softmax_rule():
    shape = (3, 2, 5)
    x = (RNG.standard_normal(shape) * 2).astype(np.float32)
    R = RNG.standard_normal(shape)
    (r,) = run_rule(_softmax_model(shape), rules.Softmax(), x, R)
    _assert_close(r, oracle_softmax(x.astype(np.float64), R))


@pytest.mark.parametrize("fill", [-np.inf, np.finfo(np.float32).min])
def test_softmax_rule_with_masked_scores_is_finite(fill):
    """Masked scores (−inf or float32's lowest, as transformers writes them) get no relevance."""
    shape = (2, 4, 4)
    mask = np.triu(np.full((4, 4), fill, np.float32), k=1)
    x = RNG.standard_normal(shape).astype(np.float32)
    R = RNG.standard_normal(shape) * (mask == 0)  # probabilities of masked scores are 0, so is R
    (r,) = run_rule(_softmax_model(shape, mask), rules.Softmax(), x, R, node_name="node")
    xm = np.where(mask == 0, x.astype(np.float64), 0.0)
    s = np.where(mask == 0, np.exp(xm), 0.0)
    s /= s.sum(-1, keepdims=True)
    want = xm * (R - s * R.sum(-1, keepdims=True))
    assert np.isfinite(r).all()
    _assert_close(r, want)


# --- LayerNorm -------------------------------------------------------------------------------------

LN_EPS = 1e-5


def _layer_norm_node(shape, gamma, beta):
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], name="node", axis=-1, epsilon=LN_EPS)]
    return _model(nodes, {"g": gamma, "b": beta}, shape)


def test_detach_std_on_layer_normalization():
    shape = (2, 3, 6)
    gamma = RNG.uniform(0.5, 1.5, 6).astype(np.float32)
    beta = (RNG.standard_normal(6) * 0.3).astype(np.float32)
    x = RNG.standard_normal(shape).astype(np.float32)
    R = RNG.standard_normal(shape)
    (r,) = run_rule(_layer_norm_node(shape, gamma, beta), rules.DetachStd(), x, R)
    _assert_close(r, oracle_detached_layer_norm(x.astype(np.float64), gamma.astype(np.float64),
                                                beta.astype(np.float64), LN_EPS, R))


def _decomposed_layer_norm(gamma, beta, weight):
    """x → (x − mean) / sqrt(mean((x − mean)²) + ε) · γ + β → MatMul(W): as torch spells it op by op."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["mu"], name="mu", axes=[-1]),
             helper.make_node("Sub", ["x", "mu"], ["xc"], name="centre"),
             helper.make_node("Mul", ["xc", "xc"], ["sq"], name="sq"),
             helper.make_node("ReduceMean", ["sq"], ["var"], name="var", axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"], name="ve"),
             helper.make_node("Sqrt", ["ve"], ["std"], name="std"),
             helper.make_node("Div", ["xc", "std"], ["xn"], name="norm"),
             helper.make_node("Mul", ["xn", "g"], ["xg"], name="scale"),
             helper.make_node("Add", ["xg", "b"], ["ln"], name="shift"),
             helper.make_node("MatMul", ["ln", "w"], ["y"], name="dense")]
    return _model(nodes, {"eps": np.float32(LN_EPS), "g": gamma, "b": beta, "w": weight}, (1, 3, 6))


@pytest.mark.parametrize("layer_norm", ["detach", "identity"])
def test_attnlrp_through_a_decomposed_layer_norm(layer_norm):
    """The whole decomposed LayerNorm, compiled under ``attnlrp``, against the oracle: LRP-0 on the
    dense layer, then the detached LayerNorm (or the identity)."""
    gamma = RNG.uniform(0.5, 1.5, 6).astype(np.float32)
    beta = (RNG.standard_normal(6) * 0.3).astype(np.float32)
    weight = RNG.standard_normal((6, 4)).astype(np.float32)
    x = RNG.standard_normal((2, 3, 6)).astype(np.float32)
    explainer = onnx_lrp.Explainer(_decomposed_layer_norm(gamma, beta, weight), composite="attnlrp",
                                   layer_norm=layer_norm)
    result = explainer.explain(x.reshape(2, 3, 6), target=[5, 7])
    x64 = x.astype(np.float64)
    mu = x64.mean(-1, keepdims=True)
    ln = (x64 - mu) / np.sqrt(((x64 - mu) ** 2).mean(-1, keepdims=True) + LN_EPS) * gamma + beta
    y = ln @ weight.astype(np.float64)
    R_y = np.zeros_like(y)
    for n, t in enumerate([5, 7]):
        R_y[n].flat[t] = y[n].flat[t]
    R_ln = ln * ((R_y / np.where(y == 0, 1, y)) @ weight.T.astype(np.float64))
    if layer_norm == "detach":
        want = oracle_detached_layer_norm(x64, gamma.astype(np.float64), beta.astype(np.float64), LN_EPS, R_ln)
    else:  # identity through centring, division and γ; β is an Add, whose share the ε-rule takes
        want = R_ln * (ln - beta) / ln
    _assert_close(result.relevance, want)


def test_gated_product_signal_is_the_ungated_branch():
    """``silu(g)·u`` (a gated MLP): CP-LRP's Epsilon gives u everything, AttnLRP's Uniform half each."""
    nodes = [helper.make_node("MatMul", ["x", "wg"], ["gate"], name="gate"),
             helper.make_node("Sigmoid", ["gate"], ["sig"], name="sig"),
             helper.make_node("Mul", ["gate", "sig"], ["act"], name="silu"),
             helper.make_node("MatMul", ["x", "wu"], ["up"], name="up"),
             helper.make_node("Mul", ["act", "up"], ["y"], name="node")]
    wg, wu = RNG.standard_normal((4, 5)).astype(np.float32), RNG.standard_normal((4, 5)).astype(np.float32)
    model = _model(nodes, {"wg": wg, "wu": wu}, (1, 4))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 5
    x = RNG.uniform(0.5, 1.5, (2, 4)).astype(np.float32)
    R = RNG.standard_normal((2, 5))
    outs = run_rule(model, rules.Epsilon(0.0), x, R)
    assert len(outs) == 1
    _assert_close(outs[0], R)
    halves = run_rule(model, rules.Uniform(), x, R)
    for half in halves:
        _assert_close(half, R / 2)
