"""Resize: the separable interpolation matrices read off onnxruntime give the exact VJP."""
import numpy as np
import pytest

from onnx_lrp import Explainer
from onnx_lrp.composites import Composite
from onnx_lrp.errors import UnsupportedOp
from onnx_lrp.rules import Gradient, Norm

from .harness import Case, check_op, linear_f32, node_model, session

NO_ROI = np.zeros(0, np.float32)


def scales(*s):
    return np.asarray(s, np.float32)


def sizes(*s):
    return np.asarray(s, np.int64)


CASES = [
    # (sample shape, resize inputs after x, attributes)
    ((2, 3, 4), [NO_ROI, scales(1, 1, 2, 2)], dict(mode="nearest")),
    ((2, 3, 4), [NO_ROI, scales(1, 1, 2, 3)], dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                                                   nearest_mode="floor")),
    ((2, 5, 4), [NO_ROI, scales(1, 1, 0.5, 0.5)], dict(mode="nearest")),
    ((2, 3, 4), [NO_ROI, scales(1, 1, 2, 2)], dict(mode="linear")),
    ((2, 3, 4), [NO_ROI, scales(1, 1, 2, 2)], dict(mode="linear", coordinate_transformation_mode="align_corners")),
    ((2, 3, 4), [NO_ROI, scales(1, 1, 1.5, 2.5)], dict(mode="linear",
                                                       coordinate_transformation_mode="pytorch_half_pixel")),
    ((2, 3, 4), [NO_ROI, scales(1, 1, 2, 2)], dict(mode="linear", coordinate_transformation_mode="asymmetric")),
    ((2, 6, 6), [NO_ROI, scales(1, 1, 0.5, 0.5)], dict(mode="linear")),
    ((2, 3, 4), [NO_ROI, "", sizes(7, 5)], dict(mode="linear", axes=[2, 3])),
    ((2, 3, 4), [NO_ROI, "", sizes(6, 8)], dict(mode="nearest", axes=[2, 3])),
    ((2, 3, 4), [NO_ROI, scales(3.0)], dict(mode="linear", axes=[-1])),
    ((2, 4, 4), [NO_ROI, scales(1, 1, 2, 2)], dict(mode="cubic")),
    ((3, 5), [NO_ROI, scales(1, 1, 2)], dict(mode="linear")),
    ((3, 5), [NO_ROI, scales(1, 1, 3)], dict(mode="nearest")),
]


@pytest.mark.parametrize("sample,inputs,attrs", CASES)
def test_resize_vjp_is_exact(sample, inputs, attrs):
    opset = 18 if "axes" in attrs else 17  # sizes for some axes only: opset 18's axes attribute
    model = node_model("Resize", sample, ["x", *inputs], opset=opset, **attrs)
    checked = check_op(model, sample, fd=linear_f32(1.0))
    assert checked.case.handler.category_of(checked.case.node, checked.case.g) == "avgpool"


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_converted_from_opset_9(mode):
    """An opset-9 Upsample is brought to the compile opset (a Resize); the Gradient rule through it
    is the transpose of the map: <J^T e_t, v> = f(v)_t for this linear f."""
    model = node_model("Upsample", (2, 3, 3), ["x", scales(1, 1, 2, 2)], opset=9, mode=mode)
    explainer = Explainer(model, composite=Composite(type_map={"Resize": Gradient()}))
    assert [n.op_type for n in explainer.model.graph.node] == ["Resize"]
    rng = np.random.default_rng(3)
    x, v = rng.standard_normal((2, 1, 2, 3, 3)).astype(np.float32)
    target = 17
    result = explainer.explain(x, target=target)
    y_t = result.output.reshape(-1)[target]
    f_v = session(explainer.model).run(None, {"x": v})[0].reshape(-1)[target]
    np.testing.assert_allclose(float((result.relevance * v).sum()) / y_t, f_v, rtol=1e-5, atol=1e-6)


def test_norm_rule_conserves_on_linear_upsampling():
    from rule_harness import run_rule

    model = node_model("Resize", (2, 3, 4), ["x", NO_ROI, scales(1, 1, 2, 2)], mode="linear")
    x = np.random.default_rng(0).uniform(0.1, 1.0, (2, 2, 3, 4)).astype(np.float32)
    R = np.random.default_rng(1).uniform(0.0, 1.0, (2, 2, 6, 8)).astype(np.float32)
    model.graph.node[-1].name = "node"
    (relevance,) = run_rule(model, Norm(0.0), x, R)
    np.testing.assert_allclose(relevance.reshape(2, -1).sum(1), R.reshape(2, -1).sum(1), rtol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_sizes_computed_from_the_batch_size(mode):
    """``F.interpolate(size=...)`` exported with a dynamic batch: sizes = Concat(Shape(x)[:1], C, H, W),
    computed at run time (they hold the batch). Found by tools/fuzz.py (seed 2000023): refused before."""
    sample = (2, 3, 4)
    prefix = [("Shape", ["x"], "batch", {"start": 0, "end": 1}),
              ("Concat", ["batch", sizes(2, 5, 7)], "sizes", {"axis": 0})]
    model = node_model("Resize", sample, ["x", "", "", "sizes"], prefix=prefix, mode=mode)
    rng = np.random.default_rng(4)
    x = rng.uniform(0.1, 1.0, (3, *sample)).astype(np.float32)
    # the gradient is the transposed map: <J^T e_t, v> = f(v)_t for this linear f, at batch 3
    gradient = Explainer(model, composite=Composite(type_map={"Resize": Gradient()}))
    v = rng.standard_normal((3, *sample)).astype(np.float32)
    f_v = session(model).run(None, {"x": v})[0].reshape(3, -1)
    targets = [0, 7, 69]
    result = gradient.explain(x, target=targets)
    assert result.output.shape == (3, 2, 5, 7)
    np.testing.assert_allclose(result.output, session(model).run(None, {"x": x})[0], rtol=1e-6)
    for n, t in enumerate(targets):
        y_t = result.output.reshape(3, -1)[n, t]
        np.testing.assert_allclose(float((result.relevance[n] * v[n]).sum()) / y_t, f_v[n, t], rtol=1e-5, atol=1e-6)
    # Norm conserves through it
    result = Explainer(model, composite=Composite(type_map={"Resize": Norm(0.0)})).explain(x, target=targets)
    np.testing.assert_allclose(result.relevance.reshape(3, -1).sum(1), result.target_output, rtol=1e-5)


def test_scales_computed_from_the_data_are_refused():
    prefix = [("ReduceSum", ["x"], "total", {"keepdims": 0}),  # 0·Σx + (1, 1, 2, 2): from the data
              ("Mul", ["total", np.float32(0.0)], "zero", {}),
              ("Add", ["zero", scales(1, 1, 2, 2)], "scales", {})]
    model = node_model("Resize", (2, 3, 4), ["x", NO_ROI, "scales"], prefix=prefix, mode="nearest")
    with pytest.raises(UnsupportedOp, match="scales or sizes depend on the data"):
        Case(model, (2, 3, 4))


@pytest.mark.parametrize("attrs,match", [
    (dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"), "tf_crop_and_resize"),
])
def test_unsupported_resize_says_why(attrs, match):
    model = node_model("Resize", (2, 3, 4), ["x", np.asarray([0, 0, 0, 0, 1, 1, 1, 1], np.float32),
                                            scales(1, 1, 2, 2)], **attrs)
    with pytest.raises(UnsupportedOp, match=match):
        Case(model, (2, 3, 4))
