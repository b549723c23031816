"""Where each tensor's batch is: read off runs at two batch sizes, so an exporter that moves the
batch off axis 0 (paddle2onnx's fused q/k/v projection split along the axis in front of it) is
explained, and an op that really mixes samples along a moved batch axis is still refused."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from model_builders import FLOAT, INT64, make_model, randn, run, vi
import onnx_lrp
from onnx_lrp.errors import UnsupportedOp

L, E, HEADS = 5, 12, 2
D = E // HEADS


def _ints(name, values):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, INT64, [len(values)], values))


def _attention_tail(nodes, inits):
    """softmax(q kᵀ / √d) v over heads (q, k, v: (N, heads, L, d)), merged back and projected."""
    nodes += [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["attn"], axis=3),
        helper.make_node("MatMul", ["attn", "v"], ["ctx"]),
        helper.make_node("Transpose", ["ctx"], ["ctx_t"], perm=[0, 2, 1, 3]),
        _ints("merged", [0, L, E]),
        helper.make_node("Reshape", ["ctx_t", "merged"], ["ctx_m"]),
        helper.make_node("MatMul", ["ctx_m", "w_o"], ["y"]),
    ]
    inits.update(scale=np.float32(D ** -0.5), w_o=randn((E, E), 4))
    return make_model(nodes, [vi("x", ["N", L, E])], [vi("y", ["N", L, E])], inits)


def paddle_attention():
    """q, k and v from one projection, reshaped to (N, L, 3, heads, d) and transposed to
    (3, N, heads, L, d): the batch sits on axis 1 when q, k, v are sliced off axis 0, as
    paddle2onnx writes PaddleOCR's SVTR attention."""
    w = np.concatenate([randn((E, E), s) for s in (1, 2, 3)], axis=1)
    nodes = [helper.make_node("MatMul", ["x", "w_qkv"], ["qkv"]), _ints("split", [0, L, 3, HEADS, D]),
             helper.make_node("Reshape", ["qkv", "split"], ["qkv5"]),
             helper.make_node("Transpose", ["qkv5"], ["qkv_t"], perm=[2, 0, 3, 1, 4]),
             _ints("axis0", [0]), _ints("one", [1])]
    for i, name in enumerate("qkv"):
        nodes += [_ints(f"{name}_start", [i]), _ints(f"{name}_end", [i + 1]),
                  helper.make_node("Slice", ["qkv_t", f"{name}_start", f"{name}_end", "axis0", "one"], [f"{name}1"]),
                  helper.make_node("Squeeze", [f"{name}1", "axis0"], [name])]
    return _attention_tail(nodes, {"w_qkv": w})


def separate_attention():
    """The same function with q, k, v projected separately, batch on axis 0 throughout."""
    nodes, inits = [_ints("heads", [0, L, HEADS, D])], {}
    for i, name in enumerate("qkv"):
        inits[f"w_{name}"] = randn((E, E), i + 1)
        nodes += [helper.make_node("MatMul", ["x", f"w_{name}"], [f"{name}_flat"]),
                  helper.make_node("Reshape", [f"{name}_flat", "heads"], [f"{name}_h"]),
                  helper.make_node("Transpose", [f"{name}_h"], [name], perm=[0, 2, 1, 3])]
    return _attention_tail(nodes, inits)


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_qkv_split_off_the_axis_before_the_batch_is_explained_as_its_plain_spelling(composite):
    x = randn((3, L, E), 7)
    target = (2, 5)
    paddle = onnx_lrp.Explainer(paddle_attention(), composite=composite).explain(x, target=target)
    plain = onnx_lrp.Explainer(separate_attention(), composite=composite).explain(x, target=target)
    np.testing.assert_allclose(paddle.output, run(paddle_attention(), {"x": x})["y"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(paddle.relevance, plain.relevance, rtol=1e-4, atol=1e-6 * np.abs(plain.relevance).max())
    one = onnx_lrp.Explainer(paddle_attention(), composite=composite).explain(x[1:2], target=target)
    np.testing.assert_allclose(one.relevance[0], paddle.relevance[1], rtol=1e-4, atol=1e-6)
    if composite == "cp_lrp":  # no biases, ε = 0: CP-LRP conserves
        np.testing.assert_allclose(paddle.conservation(), 1.0, rtol=0, atol=1e-5)


def _moved_batch(op_nodes, out_shape):
    """x (N, 4) transposed to (4, N), then ``op_nodes`` from 'xt' to 'y' (not a trailing squasher:
    the graph ends in a Mul)."""
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0])] + op_nodes
    nodes[-1].output[0] = "z"
    nodes.append(helper.make_node("Mul", ["z", "two"], ["y"]))
    return make_model(nodes, [vi("x", ["N", 4])], [vi("y", out_shape)], {"two": np.float32(2)})


@pytest.mark.parametrize("nodes,message", [
    ([_ints("s", [0]), _ints("e", [1]), _ints("a", [1]),
      helper.make_node("Slice", ["xt", "s", "e", "a"], ["t"]), helper.make_node("Transpose", ["t"], ["y"])],
     "slicing the batch axis"),
    ([helper.make_node("Softmax", ["xt"], ["t"], axis=1), helper.make_node("Transpose", ["t"], ["y"])],
     "Softmax over the batch axis"),
    ([_ints("a", [1]), helper.make_node("ReduceSum", ["xt", "a"], ["t"], keepdims=1),
      helper.make_node("Transpose", ["t"], ["y"])], "reduction over the batch axis"),
    ([_ints("p", [0, 1, 0, 0]), helper.make_node("Pad", ["xt", "p"], ["t"]), helper.make_node("Transpose", ["t"], ["y"])],
     "padding the batch axis"),
    ([_ints("r", [1, 2]), helper.make_node("Tile", ["xt", "r"], ["t"]), helper.make_node("Transpose", ["t"], ["y"])],
     "tiling the batch axis"),
])
def test_mixing_samples_along_a_batch_moved_off_axis_0_is_refused(nodes, message):
    with pytest.raises(UnsupportedOp, match=message):
        onnx_lrp.Explainer(_moved_batch(nodes, [None, 4]), composite="epsilon").explain(randn((3, 4)), target=0)


def test_slicing_axis_0_after_the_batch_moved_is_not_refused():
    nodes = [_ints("s", [1]), _ints("e", [3]), _ints("a", [0]),
             helper.make_node("Slice", ["xt", "s", "e", "a"], ["t"]), helper.make_node("Transpose", ["t"], ["y"])]
    model = _moved_batch(nodes, ["N", 2])
    x = randn((3, 4), 1)
    res = onnx_lrp.Explainer(model, composite="epsilon", epsilon=0.0).explain(x, target=1)
    expected = np.zeros_like(x)
    expected[:, 2] = 2 * x[:, 2]  # output 1 is 2 x[:, 2]: all its relevance lands there
    np.testing.assert_allclose(res.relevance, expected, rtol=1e-6)


@pytest.mark.parametrize("op,source", [
    ("Tile", [0, 1, 2, 3, 0, 1, 2, 3]),  # repeats (2, 1)
    ("Pad", [0, 0, 1, 2, 3, 3, 3]),  # edge mode, pads (1, 0, 2, 0)
])
def test_padding_and_tiling_axis_0_after_the_batch_moved_is_not_refused(op, source):
    """Axis 0 of (4, N) holds features: padding or tiling it mixes no samples, and the VJP reads
    the batch's size at run time (probed at 1 and 2, run at 3)."""
    if op == "Tile":
        nodes = [_ints("r", [2, 1]), helper.make_node("Tile", ["xt", "r"], ["t"])]
    else:
        nodes = [_ints("p", [1, 0, 2, 0]), helper.make_node("Pad", ["xt", "p"], ["t"], mode="edge")]
    model = _moved_batch(nodes + [helper.make_node("Transpose", ["t"], ["y"])], ["N", len(source)])
    x = randn((3, 4), 1)
    targets = [len(source) - 1, 0, 2]
    res = onnx_lrp.Explainer(model, composite="epsilon", epsilon=0.0).explain(x, target=targets)
    np.testing.assert_allclose(res.output, run(model, {"x": x})["y"], rtol=1e-6)
    expected = np.zeros_like(x)
    for i, t in enumerate(targets):  # y[t] = 2 x[source[t]]: all its relevance lands there
        expected[i, source[t]] = 2 * x[i, source[t]]
    np.testing.assert_allclose(res.relevance, expected, rtol=1e-6)


def test_kept_layers_leave_out_tensors_whose_samples_are_not_along_axis_0():
    """Outputs of a batched run are cut to the batch along axis 0: a (3, N, heads, L, d) tensor cut
    so would be wrong, so keep_layers leaves it out and keeps the batch-first ones."""
    x = randn((3, L, E), 7)
    res = onnx_lrp.Explainer(paddle_attention(), composite="cp_lrp").explain(x, target=(2, 5), keep_layers=True)
    assert {"x", "qkv", "qkv5", "v", "ctx"} <= set(res.layers)
    assert not {"qkv_t", "q1", "k1", "v1"} & set(res.layers)
    assert all(len(r) == 3 for r in res.layers.values())
    np.testing.assert_allclose(res.layers["qkv"].reshape(3, -1).sum(1), res.target_output, rtol=1e-5)


def test_a_model_that_runs_at_batch_1_only_is_explained_one_sample_per_run():
    """A batch of 1 baked into a Reshape (a declared free batch the graph cannot serve): the second
    probe fails, so each run holds one sample; several samples are run one at a time."""
    nodes = [_ints("shape", [1, 2, 2]), helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Concat", ["r", "r"], ["c"], axis=2), _ints("flat", [1, 8]),
             helper.make_node("Reshape", ["c", "flat"], ["y"])]
    model = make_model(nodes, [vi("x", ["N", 4])], [vi("y", ["N", 8])])
    x = randn((1, 4), 2)
    res = onnx_lrp.Explainer(model, composite="epsilon", epsilon=0.0).explain(x, target=5)
    expected = np.zeros_like(x)
    expected[0, 3] = x[0, 3]  # y[5] = r[0, 1, 1 + 2 - 2] = x[3]
    np.testing.assert_allclose(res.relevance, expected, rtol=1e-6)
    xs = randn((3, 4), 3)
    res = onnx_lrp.Explainer(model, composite="epsilon", epsilon=0.0).explain(xs, target=[5, 0, 2])
    expected = np.zeros_like(xs)
    expected[[0, 1, 2], [3, 0, 0]] = xs[[0, 1, 2], [3, 0, 0]]  # y[2] = r[0, 0, 2 - 2] = x[0]
    np.testing.assert_allclose(res.relevance, expected, rtol=1e-6)


def _at_fixed_batch(model, batch):
    """``model`` with its batch dimension declared as the number ``batch``."""
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    return model


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_a_fixed_batch_of_1_holds_one_sample_so_no_axis_is_refused_as_its_batch(composite):
    """Exported at a fixed batch of 1 (torchvision's ViT: nn.MultiheadAttention stacks q, k, v in
    front of its (L, N, E) activations), the batch cannot be probed; a run holds one sample, so
    slicing q, k, v off axis 0 mixes nothing. Several samples run one at a time, each explained as
    the free-batch model explains it; kept layers are those whose axis 0 is the run's sample."""
    x = randn((3, L, E), 7)
    free = onnx_lrp.Explainer(paddle_attention(), composite=composite).explain(x, target=(2, 5), keep_layers=True)
    fixed = onnx_lrp.Explainer(_at_fixed_batch(paddle_attention(), 1), composite=composite)
    res = fixed.explain(x, target=(2, 5), keep_layers=True)
    np.testing.assert_allclose(res.relevance, free.relevance, rtol=1e-5, atol=1e-6 * np.abs(free.relevance).max())
    assert {"x", "qkv", "qkv5", "v", "ctx"} <= set(res.layers) and "qkv_t" not in res.layers
    assert all(len(r) == 3 for r in res.layers.values())
    for name in ("qkv", "v", "ctx"):
        np.testing.assert_allclose(res.layers[name], free.layers[name], rtol=1e-5,
                                   atol=1e-6 * np.abs(free.layers[name]).max())


def test_a_fixed_batch_above_1_still_refuses_slicing_axis_0():
    """A fixed batch of 2 holds two samples per run: axis 0 is taken as the batch, as before."""
    with pytest.raises(UnsupportedOp, match="slicing the batch axis"):
        onnx_lrp.Explainer(_at_fixed_batch(paddle_attention(), 2), composite="cp_lrp").explain(
            randn((2, L, E), 7), target=(2, 5))


@pytest.mark.parametrize("op", ["Tile", "Pad"])
def test_a_fixed_batch_of_1_pads_and_tiles_axis_0(op):
    """At a fixed batch of 1 axis 0 holds no samples to mix: (1, 4) tiled or edge-padded along it
    to (3, 4), flattened to (1, 12); each output's relevance lands on the input it copies."""
    if op == "Tile":
        nodes = [_ints("r", [3, 1]), helper.make_node("Tile", ["x", "r"], ["t"])]
    else:
        nodes = [_ints("p", [1, 0, 1, 0]), helper.make_node("Pad", ["x", "p"], ["t"], mode="edge")]
    source = [0, 1, 2, 3] * 3
    nodes += [_ints("flat", [-1, 12]), helper.make_node("Reshape", ["t", "flat"], ["z"]),
              helper.make_node("Mul", ["z", "two"], ["y"])]
    model = make_model(nodes, [vi("x", [1, 4])], [vi("y", [1, 12])], {"two": np.float32(2)})
    xs = randn((2, 4), 5)
    targets = [9, 2]
    res = onnx_lrp.Explainer(model, composite="epsilon", epsilon=0.0).explain(xs, target=targets)
    expected = np.zeros_like(xs)
    for i, t in enumerate(targets):
        expected[i, source[t]] = 2 * xs[i, source[t]]
    np.testing.assert_allclose(res.relevance, expected, rtol=1e-6)
    free = make_model(nodes[:2] + [helper.make_node("Mul", ["t", "two"], ["y"])], [vi("x", ["N", 4])],
                      [vi("y", [None, 4])], {"two": np.float32(2)})
    with pytest.raises(UnsupportedOp, match=f"{'tiling' if op == 'Tile' else 'padding'} the batch axis"):
        onnx_lrp.Explainer(free, composite="epsilon").explain(xs[:1], target=0)  # samples would mix
