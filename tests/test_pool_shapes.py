"""ceil_mode pools whose last window starts in the padding: onnxruntime drops that window, ONNX
shape inference keeps it. The explainer is built on onnxruntime's shapes (the probe runs the
model) and the pools are specialised to explicit end padding, so every tool agrees."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import helper

import onnx_lrp
from onnx_lrp.composites import EpsilonComposite
from onnx_lrp.probe import inferred_shapes, probe
from onnx_lrp.rules import Norm
from onnx_lrp.ceil_pools import check_agreement, specialize_pools
from model_builders import make_model, randn, run, vi

LRP0 = EpsilonComposite(epsilon=0.0, type_map={"AveragePool": Norm(0.0), "GlobalAveragePool": Norm(0.0)})


def _pool_head(op: str, in_shape=(2, 6, 9), **pool) -> "onnx.ModelProto":
    """x -> pool -> GlobalAveragePool -> Flatten -> Gemm (no bias): the issue's reproducer."""
    pool = {"kernel_shape": [1, 1], "strides": [2, 2], "ceil_mode": 1, **pool}
    w = np.random.default_rng(0).standard_normal((3, in_shape[0])).astype(np.float32)
    nodes = [helper.make_node(op, ["x"], ["p"], name="pool", **pool),
             helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transB=1)]
    return make_model(nodes, [vi("x", ["N", *in_shape])], [vi("y", ["N", 3])], {"w": w})


REPRODUCERS = {
    "MaxPool": ("MaxPool", {}),
    "AveragePool": ("AveragePool", {}),
    "AveragePool count_include_pad": ("AveragePool", {"count_include_pad": 1, "kernel_shape": [3, 2],
                                                      "pads": [1, 0, 1, 1]}),
    "MaxPool padded 3x3": ("MaxPool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
}


@pytest.mark.parametrize("case", list(REPRODUCERS))
def test_ceil_pool_conserves_and_matches_onnxruntime(case):
    op, attrs = REPRODUCERS[case]
    model = _pool_head(op, **attrs)
    x = randn((3, 2, 6, 9), 1)
    res = onnx_lrp.Explainer(model, composite=LRP0).explain(x)
    np.testing.assert_allclose(res.output, run(model, {"x": x})["y"], rtol=1e-5, atol=1e-6)
    total = res.relevance.reshape(3, -1).sum(axis=1, dtype=np.float64)
    np.testing.assert_allclose(total, res.target_output, rtol=1e-5)


def test_inference_and_onnxruntime_disagree_on_the_reproducer():
    """The premise: without the specialisation the shapes differ (and the check says so)."""
    model = _pool_head("MaxPool")
    feeds = {"x": np.zeros((1, 2, 6, 9), np.float32)}
    shapes, _ = probe(model, feeds, "m")
    assert shapes["p"] == (1, 2, 3, 5)
    assert inferred_shapes(model, feeds)["p"] == (1, 2, 4, 5)
    with pytest.raises(onnx_lrp.errors.UnsupportedOp, match=r"'pool'.*\(1, 2, 4, 5\).*\(1, 2, 3, 5\)"):
        check_agreement(model, feeds, shapes, "m")


def _geometries():
    for op, k, s, p, d, inc in itertools.product(("MaxPool", "AveragePool"), (1, 2, 3), (1, 2, 3), (0, 1),
                                                   (1, 2), (0, 1)):
        if p >= k or (op == "AveragePool" and d != 1) or (op == "MaxPool" and inc):
            continue  # ONNX: pads smaller than the kernel; AveragePool dilations need opset 19
        yield op, k, s, p, d, inc


@pytest.mark.parametrize("op,k,s,p,d,inc", list(_geometries()))
def test_specialised_pool_computes_the_same_values(op, k, s, p, d, inc):
    attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": [p, 0, 0, p], "ceil_mode": 1}
    if d != 1:
        attrs["dilations"] = [d, d]
    if inc:
        attrs["count_include_pad"] = 1
    model = make_model([helper.make_node(op, ["x"], ["y"], name="pool", **attrs)],
                       [vi("x", ["N", 2, 7, 8])], [vi("y", ["N", 2, None, None])])
    x = randn((1, 2, 7, 8), 2)
    shapes, dtypes = probe(model, {"x": x}, "m")
    special, shapes, _ = specialize_pools(model, shapes, dtypes)
    if any(a.name == "ceil_mode" and a.i for n in special.graph.node for a in n.attribute):
        # left alone (a dilated window would need end pads as large as the kernel): then either
        # inference already agrees with onnxruntime or the explainer refuses the model
        assert d != 1
        if inferred_shapes(model, {"x": x})["y"] != shapes["y"]:
            with pytest.raises(onnx_lrp.errors.UnsupportedOp):
                check_agreement(special, {"x": x}, shapes, "m")
        return
    check_agreement(special, {"x": x}, shapes, "m")  # inference now agrees with onnxruntime
    # the same windows and divisors; the explicit Pad of count_include_pad changes float rounding
    np.testing.assert_allclose(run(special, {"x": x})["y"], run(model, {"x": x})["y"], rtol=1e-6, atol=1e-7)
