"""LSTM, GRU and RNN: the unrolled forward pass against onnxruntime, LRP against a float64 numpy
oracle of Arras et al.'s LRP-LSTM rules (tests/recurrent_oracle.py), conservation, and the
Gradient composite against finite differences."""
from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from onnx_lrp import Explainer
from onnx_lrp.attribution import attributor
from onnx_lrp.canonize.unroll_rnn import unroll_recurrent, unrolled_from
from onnx_lrp.errors import UnsupportedOp
from onnx_lrp.inspection import inspect_model
from onnx_lrp.rules import Uniform

from recurrent_models import batch_first_twin, recurrent_model
from recurrent_oracle import Recurrent

OPS = ["LSTM", "GRU", "RNN"]
DIRECTIONS = ["forward", "reverse", "bidirectional"]
#: (op, linear_before_reset) pairs: GRU in both forms
CELLS = [("LSTM", 0), ("GRU", 0), ("GRU", 1), ("RNN", 0)]


def _run(model, x, outputs=None):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, {"x": x})


def _variants(op, direction):
    per_direction = ["HardSigmoid", "LeakyRelu", "Relu"][:{"LSTM": 3, "GRU": 2, "RNN": 1}[op]]
    activations = per_direction * (2 if direction == "bidirectional" else 1)
    variants = [{}, {"states": "random"}, {"states": "zero", "clip": 0.7},
                {"activations": activations, "activation_alpha": [0.3, 0.05], "activation_beta": [0.4]}]
    if op == "GRU":
        variants += [{"linear_before_reset": 1}, {"linear_before_reset": 1, "states": "random", "clip": 0.5}]
    if op == "LSTM":
        variants += [{"peepholes": True, "states": "random"}, {"input_forget": 1}]
    return variants


@pytest.mark.parametrize("op,direction", list(itertools.product(OPS, DIRECTIONS)))
def test_unrolled_forward_equals_onnxruntime(op, direction):
    """Every output (Y, Y_h, Y_c), layout 0 (run by onnxruntime) and layout 1 (its batch-first twin)."""
    x = np.random.default_rng(1).standard_normal((4, 2, 3)).astype(np.float32) * 2
    for variant in _variants(op, direction):
        model = recurrent_model(op, direction, steps=4, batch=2, **variant)
        expected = _run(model, x)
        got = _run(unroll_recurrent(model, {"x": x.shape}), x)
        twin_x = x.transpose(1, 0, 2).copy()
        twin = _run(unroll_recurrent(batch_first_twin(model), {"x": twin_x.shape}), twin_x)
        for e, g, t in zip(expected, got, twin):
            np.testing.assert_allclose(g, e, rtol=0, atol=1e-6, err_msg=str(variant))
            perm = (2, 0, 1, 3) if e.ndim == 4 else (1, 0, 2)
            np.testing.assert_allclose(t, e.transpose(perm), rtol=0, atol=1e-6, err_msg=str(variant))


def test_unrolled_nodes_name_their_recurrent_node_and_role():
    model = unroll_recurrent(recurrent_model("LSTM", steps=3), {"x": (3, 1, 3)})
    roles = {}
    for node in model.graph.node:
        info = unrolled_from(node)
        assert info is not None and info["node"] == "lstm_0" and info["op"] == "LSTM", node.name
        roles.setdefault(info["role"], set()).add(node.op_type)
    assert roles["linear"] == {"Gemm", "Concat"} and roles["cell"] == {"Add"}
    assert roles["gate"] == {"Sigmoid", "Mul"}


def _oracle(model, op, direction, lbr):
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    bias = w.get("B", np.zeros((w["W"].shape[0], 2 * w["W"].shape[1])))
    return Recurrent(op, w["W"], w["R"], bias, w["R"].shape[-1], direction, lbr), w


def _states(w, op):
    """The constant initial states [B, D, H] of a layout-1 model, per sample [D, H] (or None)."""
    return w.get("h0"), w.get("c0") if op == "LSTM" else None


def _oracle_lrp(model, op, direction, lbr, x, target, eps, cell_eps):
    """Relevance of x [N, T, F] for the head's logit ``target``, from the numpy oracle."""
    layer, w = _oracle(model, op, direction, lbr)
    h0, c0 = _states(w, op)
    result = []
    for n, sample in enumerate(x.astype(np.float64)):
        h0_n = None if h0 is None else h0[n]
        c0_n = None if c0 is None else c0[n]
        Y, _ = layer.forward(sample, h0_n, c0_n)
        flat = Y.reshape(-1)
        logits = flat @ w["head_W"] + w["head_b"]
        R_logits = np.zeros_like(logits)
        R_logits[target[n]] = logits[target[n]]
        from recurrent_oracle import lrp_linear
        R_flat = lrp_linear(flat, w["head_W"].T.astype(np.float64), logits, R_logits, eps)
        result.append(layer.lrp(sample, R_flat.reshape(Y.shape), eps, cell_eps, 1e-6, h0_n, c0_n))
    return np.stack(result), logits


@pytest.mark.parametrize("cell,direction", list(itertools.product(CELLS, DIRECTIONS)))
def test_lrp_matches_arras_oracle(cell, direction):
    """Composite epsilon (ε = 1e-3 on the linear maps) with cell_epsilon = 1e-2, biases and a dense
    head: every input's relevance equals the float64 oracle's."""
    op, lbr = cell
    model = recurrent_model(op, direction, steps=5, batch=2, layout=1, head="linear", linear_before_reset=lbr,
                            seed=3)
    x = np.random.default_rng(4).standard_normal((2, 5, 3)).astype(np.float32)
    explanation = Explainer(model, composite="epsilon", epsilon=1e-3, cell_epsilon=1e-2).explain(x, target=[0, 2])
    expected, _ = _oracle_lrp(model, op, direction, lbr, x, [0, 2], 1e-3, 1e-2)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(explanation.relevance, expected, rtol=0, atol=2e-5 * scale)


@pytest.mark.parametrize("cell", CELLS)
def test_constant_initial_states_are_absorbed(cell):
    """Non-zero constant initial states: their share is absorbed (state gates give the gate nothing)."""
    op, lbr = cell
    model = recurrent_model(op, "bidirectional", steps=4, batch=2, layout=1, head="linear", states="random",
                            linear_before_reset=lbr, seed=5)
    x = np.random.default_rng(6).standard_normal((2, 4, 3)).astype(np.float32)
    explanation = Explainer(model, composite="epsilon", epsilon=1e-3, cell_epsilon=1e-3).explain(x, target=[1, 1])
    expected, _ = _oracle_lrp(model, op, "bidirectional", lbr, x, [1, 1], 1e-3, 1e-3)
    np.testing.assert_allclose(explanation.relevance, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize("cell,direction", list(itertools.product(CELLS, DIRECTIONS)))
def test_conservation_with_zero_biases_and_epsilon_zero(cell, direction):
    op, lbr = cell
    model = recurrent_model(op, direction, steps=6, batch=3, layout=1, head="linear", bias=False,
                            linear_before_reset=lbr, seed=7)
    x = np.random.default_rng(8).standard_normal((3, 6, 3)).astype(np.float32)
    explanation = Explainer(model, composite="epsilon", epsilon=0.0, cell_epsilon=0.0).explain(x, target=[0, 1, 2])
    np.testing.assert_allclose(explanation.conservation(), 1.0, rtol=0, atol=1e-4)


@pytest.mark.parametrize("op", OPS)
def test_targets_at_a_time_step_and_on_the_final_state(op):
    """The layer's own outputs explained: Y [B, T, D, H] at (t, d, c) and Y_h [B, D, H] at (d, c)."""
    model = recurrent_model(op, "bidirectional", steps=5, batch=1, layout=1, bias=False, seed=9,
                            outputs=("Y", "Y_h"))
    x = np.random.default_rng(10).standard_normal((1, 5, 3)).astype(np.float32)
    layer, _ = _oracle(model, op, "bidirectional", 0)
    Y, _ = layer.forward(x[0].astype(np.float64))
    for output, index in (("Y", (2, 1, 3)), ("Y_h", (0, 1))):
        explainer = Explainer(model, composite="epsilon", epsilon=0.0, cell_epsilon=0.0, output=output)
        shape = (5, 2, 4) if output == "Y" else (2, 4)
        flat = int(np.ravel_multi_index(index, shape))
        explanation = explainer.explain(x, target=[flat])
        np.testing.assert_allclose(explanation.conservation(), 1.0, atol=1e-4)
        R_Y = np.zeros_like(Y)
        if output == "Y":
            R_Y[index] = Y[index]
        else:  # the final state of direction d is Y at its last processed step
            t = 4 if index[0] == 0 else 0
            R_Y[t, index[0], index[1]] = Y[t, index[0], index[1]]
        expected = layer.lrp(x[0].astype(np.float64), R_Y, eps=0.0, cell_eps=0.0)
        np.testing.assert_allclose(explanation.relevance[0], expected, atol=1e-5 * np.abs(expected).max())
        # relevance comes only from steps the target depends on
        if output == "Y" and index[1] == 1:  # the reverse direction at t=2 reads x[2:]
            assert not explanation.relevance[0, :2].any()


@pytest.mark.parametrize("cell,case", list(itertools.product(
    CELLS, [("forward", None), ("bidirectional", None), ("bidirectional", "random")])))
def test_gradient_composite_matches_finite_differences(cell, case):
    """Central differences of the oracle's float64 forward pass (constant initial states: the state
    gates' VJPs)."""
    op, lbr = cell
    direction, states = case
    model = recurrent_model(op, direction, steps=4, batch=1, layout=1, head="linear", linear_before_reset=lbr,
                            seed=11, states=states)
    x = np.random.default_rng(12).standard_normal((1, 4, 3)).astype(np.float32)
    grad = attributor(model).gradient(x, np.array([1]))
    layer, w = _oracle(model, op, direction, lbr)
    h0, c0 = _states(w, op)

    def logit(sample):
        Y, _ = layer.forward(sample, None if h0 is None else h0[0], None if c0 is None else c0[0])
        return Y.reshape(-1) @ w["head_W"][:, 1] + w["head_b"][1]

    step, fd = 1e-5, np.zeros(x.shape[1:])
    base = x[0].astype(np.float64)
    for index in np.ndindex(*fd.shape):
        up, down = base.copy(), base.copy()
        up[index] += step
        down[index] -= step
        fd[index] = (logit(up) - logit(down)) / (2 * step)
    np.testing.assert_allclose(grad[0], fd, rtol=0, atol=1e-5 * max(1.0, np.abs(fd).max()))


def test_numpy_oracle_forward_equals_onnxruntime():
    """The oracle computes what the ONNX ops compute (so it checks the layer, not itself)."""
    for (op, lbr), direction in itertools.product(CELLS, DIRECTIONS):
        model = recurrent_model(op, direction, steps=4, batch=2, linear_before_reset=lbr, seed=13, outputs=("Y",))
        x = np.random.default_rng(14).standard_normal((4, 2, 3)).astype(np.float32)
        (expected,) = _run(model, x)  # [T, D, B, H]
        layer, _ = _oracle(model, op, direction, lbr)
        for b in range(2):
            Y, _ = layer.forward(x[:, b].astype(np.float64))
            np.testing.assert_allclose(Y, expected[:, :, b], rtol=0, atol=1e-6)


def test_inspect_lists_the_recurrent_node_with_its_rules():
    model = recurrent_model("LSTM", "forward", steps=3, layout=1, head="linear")
    listing = inspect_model(model, composite="epsilon_plus_flat", cell_epsilon=0.01)
    rows = {r.name: r for r in listing.rows}
    assert rows["lstm_0/forward/t1/c"].category == "cell"
    assert rows["lstm_0/forward/t1/c"].rule == "Norm(stabilizer=0.01)"
    assert rows["lstm_0/forward/t1/f_c"].category == "gate" and rows["lstm_0/forward/t1/f_c"].rule == "Pass()"
    assert rows["lstm_0/forward/t1/g_pre"].rule == "Epsilon(epsilon=1e-06)"  # dense rule, never Flat
    assert rows["lstm_0/forward/t1/f_pre"].status == "no relevance"
    text = listing.format()
    assert "LSTM 'lstm_0'" in text and "3 steps" in text


def _with_sequence_lens(lengths):
    model = recurrent_model("GRU", steps=4, batch=2, sequence_lens=lengths)
    return model


def test_sequence_lens_equal_to_the_length_are_accepted_and_others_refused():
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    model = _with_sequence_lens([4, 4])
    np.testing.assert_allclose(_run(unroll_recurrent(model, {"x": x.shape}), x)[0], _run(model, x)[0], atol=1e-6)
    with pytest.raises(UnsupportedOp, match=r"sequence_lens \[4, 2\] differ from the sequence length 4"):
        unroll_recurrent(_with_sequence_lens([4, 2]), {"x": x.shape})


def test_unsupported_activation_is_named():
    model = recurrent_model("RNN", activations=["ScaledTanh"], activation_alpha=[1.0], activation_beta=[1.0])
    with pytest.raises(UnsupportedOp, match="'rnn_0'.*activation 'ScaledTanh' is not supported"):
        unroll_recurrent(model, {"x": (5, 1, 3)})


def test_weights_computed_at_run_time_are_refused():
    model = recurrent_model("RNN")
    onnx_model = onnx.ModelProto()
    onnx_model.CopyFrom(model)
    onnx_model.graph.node[0].input[1] = "x_weights"
    onnx_model.graph.node.insert(0, onnx.helper.make_node("Identity", ["W"], ["x_weights"]))
    with pytest.raises(UnsupportedOp, match="W 'x_weights' is computed at run time"):
        unroll_recurrent(onnx_model, {"x": (5, 1, 3)})


def test_name_map_reaches_an_unrolled_node():
    """A rule named for one unrolled node (inspect lists the names) replaces the composite's."""
    model = recurrent_model("LSTM", "forward", steps=3, layout=1, head="linear", bias=False)
    x = np.random.default_rng(15).standard_normal((1, 3, 3)).astype(np.float32)
    plain = Explainer(model, composite="epsilon", epsilon=0.0, cell_epsilon=0.0).explain(x, target=[0])
    # the forget gate of the last step gets half of f⊙c' instead of none
    uniform = Explainer(model, composite="epsilon", epsilon=0.0, cell_epsilon=0.0,
                        name_map={"lstm_0/forward/t2/f_c": Uniform()}).explain(x, target=[0])
    assert not np.allclose(plain.relevance, uniform.relevance)
    np.testing.assert_allclose(uniform.conservation(), 1.0, atol=1e-4)  # Uniform on a product conserves
