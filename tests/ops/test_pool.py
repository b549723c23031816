"""MaxPool / GlobalMaxPool (winner takes all), AveragePool / GlobalAveragePool, ReduceMean/ReduceSum."""
import numpy as np
import pytest
from onnx import TensorProto, helper

from onnx_lrp import Explainer
from onnx_lrp.compile import TARGET, compile_explainer
from onnx_lrp.errors import UnsupportedOp
from onnx_lrp.executor import CPU, make_session

from .harness import F64, Case, check_op, linear_f32, node_model

try:
    import oracle
except ImportError:  # run from the repository root as a package
    from tests import oracle


def distinct(shape, seed=0, gap=0.1):
    """Batch-3 input whose values all differ by at least ``gap``: no window has a tie, and a
    finite-difference step below gap/2 never changes a window's winner."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(3 * n).reshape((3, *shape)) * gap - 1.5 * n * gap).astype(np.float32)


def ceil_end_pads(in_spatial, out_spatial, kernel, strides, pads, dilations):
    """End pads that make floor-mode windows coincide with the ceil-mode output (padding never wins)."""
    nd = len(kernel)
    ends = []
    for i in range(nd):
        need = (out_spatial[i] - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1
        ends.append(need - in_spatial[i] - pads[i])
    return list(pads[:nd]) + ends


MAXPOOL = {
    "2d_overlap_3x3_s2_pads": ((2, 7, 7), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    "2d_asym_pads": ((2, 6, 5), dict(kernel_shape=[3, 2], strides=[2, 1], pads=[0, 1, 2, 0])),
    "2d_dilated": ((2, 7, 6), dict(kernel_shape=[2, 3], strides=[1, 1], dilations=[2, 2])),
    "2d_ceil_mode": ((2, 6, 7), dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    "2d_ceil_mode_pads": ((1, 7, 6), dict(kernel_shape=[2, 3], strides=[2, 2], pads=[1, 0, 0, 1], ceil_mode=1)),
    "2d_same_upper": ((2, 5, 6), dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER")),
    "2d_same_lower": ((2, 5, 6), dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_LOWER")),
    "1d": ((3, 9), dict(kernel_shape=[3], strides=[2], pads=[1, 0])),
    "1d_dilated_ceil": ((2, 10), dict(kernel_shape=[2], strides=[3], dilations=[2], ceil_mode=1)),
    "3d": ((2, 4, 5, 4), dict(kernel_shape=[2, 3, 2], strides=[2, 1, 2], pads=[0, 1, 1, 1, 0, 0])),
}


def _explicit_pads(case, attrs):
    """The pads onnxruntime used, for the oracle (auto_pad resolved, ceil_mode as extra end pads)."""
    in_sp = case.g.shape(case.node.input[0])[2:]
    out_sp = case.g.shape(case.node.output[0])[2:]
    k = attrs["kernel_shape"]
    s = attrs.get("strides", [1] * len(k))
    d = attrs.get("dilations", [1] * len(k))
    pads = list(attrs.get("pads", [0] * 2 * len(k)))
    if attrs.get("auto_pad", "NOTSET") != "NOTSET":
        pads = []
        begin, end = [], []
        for n, o, kk, ss, dd in zip(in_sp, out_sp, k, s, d):
            total = max((o - 1) * ss + dd * (kk - 1) + 1 - n, 0)
            small, large = total // 2, total - total // 2
            begin.append(small if attrs["auto_pad"] == "SAME_UPPER" else large)
            end.append(large if attrs["auto_pad"] == "SAME_UPPER" else small)
        pads = begin + end
    return ceil_end_pads(in_sp, out_sp, k, s, pads, d), s, d


@pytest.mark.parametrize("name", sorted(MAXPOOL))
def test_maxpool(name):
    sample, attrs = MAXPOOL[name]
    model = node_model("MaxPool", sample, **attrs)
    checked = check_op(model, sample, x=distinct(sample), fd=F64)
    # winner takes all, against the numpy oracle, on the batch of 3
    case = checked.case
    pads, strides, dilations = _explicit_pads(case, attrs)
    _check_wta(case, checked.emitted, attrs["kernel_shape"], strides, pads, dilations, distinct(sample, seed=1))


def _check_wta(case, emitted, kernel, strides, pads, dilations, x, seed=0):
    R = np.random.default_rng(seed).uniform(0.5, 1.5, (3, *case.g.shape(case.node.output[0])[1:])).astype(np.float32)
    got = emitted.run({"x": x, "grad0": R})["vjp0"]
    want = oracle.max_pool_wta(x, R, kernel, strides, pads, dilations)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # every window has an in-bounds winner: relevance is conserved, overlapping windows included
    np.testing.assert_allclose(got.reshape(3, -1).sum(1), R.reshape(3, -1).sum(1, dtype=np.float64), rtol=1e-5)


@pytest.mark.parametrize("name", ["2d_overlap_3x3_s2_pads", "2d_dilated", "1d", "3d", "2d_ceil_mode"])
def test_maxpool_ties_go_to_the_first_maximum(name):
    """Inputs drawn from {0, 1, 2}: most windows tie. Relevance goes to one element per window,
    the first maximum in row-major kernel order (the oracle's choice), never split."""
    sample, attrs = MAXPOOL[name]
    case = Case(node_model("MaxPool", sample, **attrs), sample)
    emitted = case.emit(None, forward=False)
    x = np.random.default_rng(5).integers(0, 3, (3, *sample)).astype(np.float32)
    pads, strides, dilations = _explicit_pads(case, attrs)
    _check_wta(case, emitted, attrs["kernel_shape"], strides, pads, dilations, x, seed=3)


def test_maxpool_overlap_conserves_and_concentrates():
    """A single large value in the middle wins every window that contains it."""
    sample = (1, 5, 5)
    model = node_model("MaxPool", sample, kernel_shape=[3, 3], strides=[1, 1])
    case = Case(model, sample)
    emitted = case.emit(None, forward=False)
    x = np.zeros((1, *sample), np.float32) - np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5) * 1e-3
    x[0, 0, 2, 2] = 10.0
    R = np.ones((1, 1, 3, 3), np.float32)
    got = emitted.run({"x": x, "grad0": R})["vjp0"]
    expected = np.zeros_like(x)
    expected[0, 0, 2, 2] = 9.0
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("sample", [(3, 7), (3, 4, 5), (2, 3, 2, 4)])
def test_global_maxpool(sample):
    """onnxruntime has no float64 GlobalMaxPool: float32 steps of 0.02 on values 0.1 apart."""
    model = node_model("GlobalMaxPool", sample)
    checked = check_op(model, sample, x=distinct(sample), fd=linear_f32(0.02))
    spatial = list(sample[1:])
    _check_wta(checked.case, checked.emitted, spatial, [1] * len(spatial), [0] * 2 * len(spatial), [1] * len(spatial),
               distinct(sample, seed=2))


def test_maxpool_storage_order_is_unsupported():
    model = node_model("MaxPool", (1, 4, 4), kernel_shape=[2, 2], storage_order=1)
    with pytest.raises(UnsupportedOp, match="storage_order"):
        Case(model, (1, 4, 4))


AVGPOOL = {
    "2d_exclude_pad": ((2, 7, 6), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 0])),
    "2d_include_pad": ((2, 7, 6), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 0], count_include_pad=1)),
    "2d_ceil_exclude": ((2, 6, 7), dict(kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1)),
    "2d_ceil_include_pads": ((2, 6, 7), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1,
                                             count_include_pad=1)),
    "2d_overlap_stride1": ((1, 5, 5), dict(kernel_shape=[2, 3])),
    "2d_same_upper": ((2, 5, 6), dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER")),
    "2d_same_lower_include": ((2, 5, 6), dict(kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_LOWER",
                                              count_include_pad=1)),
    "1d_exclude": ((3, 9), dict(kernel_shape=[3], strides=[2], pads=[1, 2])),
    "1d_include": ((3, 9), dict(kernel_shape=[3], strides=[2], pads=[1, 2], count_include_pad=1)),
    "3d_exclude": ((2, 4, 5, 3), dict(kernel_shape=[2, 3, 2], strides=[2, 2, 1], pads=[1, 0, 1, 0, 1, 0])),
    "3d_include_ceil": ((1, 5, 4, 5), dict(kernel_shape=[2, 2, 3], strides=[2, 2, 2], pads=[0, 1, 1, 0, 0, 1],
                                           count_include_pad=1, ceil_mode=1)),
}


@pytest.mark.parametrize("name", sorted(AVGPOOL))
def test_average_pool(name):
    sample, attrs = AVGPOOL[name]
    model = node_model("AveragePool", sample, **attrs)
    check_op(model, sample, fd=linear_f32())


def test_average_pool_dilated_opset19():
    sample = (2, 7, 6)
    model = node_model("AveragePool", sample, opset=19, kernel_shape=[2, 2], strides=[1, 2], dilations=[2, 1],
                       pads=[1, 0, 0, 1])
    check_op(model, sample, fd=linear_f32())


def test_average_pool_matches_oracle():
    """Independent of onnxruntime: the VJP is the transpose of the oracle's dense average pool."""
    sample = (2, 6, 5)
    attrs = dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1])
    for include in (0, 1):
        model = node_model("AveragePool", sample, count_include_pad=include, **attrs)
        case = Case(model, sample)
        emitted = case.emit(None, forward=False)
        A, _ = oracle.avg_pool_to_dense(sample, attrs["kernel_shape"], attrs["strides"], attrs["pads"],
                                        count_include_pad=bool(include))
        out_shape = case.g.shape(case.node.output[0])
        R = np.random.default_rng(include).standard_normal(out_shape).astype(np.float32)
        got = emitted.run({"x": np.zeros((1, *sample), np.float32), "grad0": R})["vjp0"]
        np.testing.assert_allclose(got.reshape(-1), A.T @ R.reshape(-1), rtol=1e-5, atol=1e-6)


def test_global_average_pool():
    sample = (3, 4, 5)
    check_op(node_model("GlobalAveragePool", sample), sample, fd=linear_f32())
    sample = (2, 3, 2, 4)
    check_op(node_model("GlobalAveragePool", sample), sample, fd=linear_f32())


REDUCE = {
    "mean_attr_keep": ("ReduceMean", 17, dict(axes=[2], keepdims=1), None),
    "mean_attr_drop_two_axes": ("ReduceMean", 17, dict(axes=[1, 3], keepdims=0), None),
    "mean_attr_negative_axis": ("ReduceMean", 17, dict(axes=[-1], keepdims=0), None),
    "mean_input_axes_opset18": ("ReduceMean", 18, dict(keepdims=0), [2, -1]),
    "sum_input_keep": ("ReduceSum", 17, dict(keepdims=1), [1]),
    "sum_input_drop": ("ReduceSum", 17, dict(keepdims=0), [3, 1]),
    "sum_noop_empty_axes": ("ReduceSum", 17, dict(keepdims=1, noop_with_empty_axes=1), None),
    "sum_attr_opset11": ("ReduceSum", 11, dict(axes=[2, 3], keepdims=0), None),
}


@pytest.mark.parametrize("name", sorted(REDUCE))
def test_reduce(name):
    op, opset, attrs, axes = REDUCE[name]
    sample = (2, 3, 4)
    inputs = ["x"] if axes is None else ["x", np.array(axes, np.int64)]
    model = node_model(op, sample, inputs, opset=opset, **attrs)
    checked = check_op(model, sample, fd=F64)
    assert checked.case.handler.category_of(checked.case.node, checked.case.g) == "avgpool"


@pytest.mark.parametrize("inputs, attrs", [(["x"], {}), (["x", np.array([0, 2])], {})])
def test_reduce_over_batch_is_unsupported(inputs, attrs):
    model = node_model("ReduceSum", (2, 3), inputs, **attrs)
    with pytest.raises(UnsupportedOp, match="batch"):
        Case(model, (2, 3))


def test_maxpool_input_smaller_than_its_window_routes_relevance():
    """onnxruntime pools a 1×1 map with a 2×2 window to 1×1; MaxUnpool would refuse that output
    size, so the VJP must fall back to the scatter (found by tests/test_conservation.py)."""
    import onnx_lrp
    from onnx import TensorProto, helper
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="mp"),
             helper.make_node("Flatten", ["p"], ["y"], name="flat")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.array([[[[0.5]], [[2.0]]]], np.float32)
    res = onnx_lrp.Explainer(model, composite="epsilon").explain(x, target=1)
    np.testing.assert_allclose(res.relevance.ravel(), [0.0, 2.0])


def test_maxpool_padded_beyond_its_windows_span_routes_relevance():
    """A 1-row map pooled with a 2-row window, stride 3 and one row of padding on each side:
    MaxUnpool's default output size (O−1)·s + k − pads is 0 and it refuses to run even with the
    output shape given, so the VJP must scatter (found by tools/fuzz.py)."""
    import onnx_lrp
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 1], strides=[3, 1], pads=[1, 0, 1, 0],
                              name="mp"),
             helper.make_node("Flatten", ["p"], ["y"], name="flat")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.array([[[[0.5, 2.0, -1.0]]]], np.float32)
    res = onnx_lrp.Explainer(model, composite="epsilon").explain(x, target=1)
    np.testing.assert_allclose(res.relevance.ravel(), [0.0, 2.0, 0.0])


def test_maxpool_vjp_for_cuda_scatters_instead_of_unpooling():
    """onnxruntime has no CUDA MaxUnpool; graphs compiled for CUDA scatter, with the same result."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "d"], ["y"], transB=1)]
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [4, 2, 3, 3], rng.standard_normal(72).tolist()),
             helper.make_tensor("d", TensorProto.FLOAT, [5, 64], rng.standard_normal(320).tolist())]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    explainer = Explainer(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), composite="epsilon")
    g = explainer.graph((2, 8, 8))
    x = rng.standard_normal((3, 2, 8, 8)).astype(np.float32)
    results = {}
    for device in ("cpu", "cuda"):
        compiled = compile_explainer(g, explainer.composite, device=device)
        ops = {n.op_type for n in compiled.model.graph.node}
        assert ("MaxUnpool" in ops) == (device == "cpu") and ("ScatterElements" in ops) == (device == "cuda")
        session = make_session(compiled.model, [CPU])
        results[device] = session.run(None, {compiled.input_name: x, TARGET: np.full(3, -1, np.int64)})[0]
    np.testing.assert_array_equal(results["cuda"], results["cpu"])
