"""restore_softmax: the opset-13 adapter the version converter writes for an old Softmax becomes a
plain Softmax again where it is one, so that the trailing Softmax can be stripped."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, version_converter

import onnx_lrp
from canon_helpers import assert_same_outputs, make_model, op_counts, randn, vi
from onnx_lrp.canonize import canonize, restore_softmax


def _old_softmax_model(out_shape, axis=1, op="Softmax"):
    """x (N, 4) -> Gemm -> Reshape to ``out_shape`` -> Softmax(axis) at opset 11, converted to 17."""
    features = int(np.prod(out_shape))
    inits = {"w": randn((4, features), 1), "shape": np.asarray([-1, *out_shape], np.int64)}
    model = make_model(
        [helper.make_node("Gemm", ["x", "w"], ["g"], name="gemm"),
         helper.make_node("Reshape", ["g", "shape"], ["logits"], name="reshape"),
         helper.make_node(op, ["logits"], ["prob"], name="softmax", axis=axis)],
        [vi("x", ["N", 4])], [vi("prob", ["N", *out_shape])], inits, opset=11)
    return version_converter.convert_version(model, 17)


@pytest.mark.parametrize("out_shape,axis", [((5, 1, 1), 1), ((5, 1), 1), ((2, 5, 1), -2)])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_adapter_over_one_axis_becomes_a_softmax(out_shape, axis, op):
    """Softmax over axis 1 of (N, C, 1, 1), as Caffe2 classifiers end: the adapter is a Softmax.
    (Over the last axis the converter writes no adapter at all.)"""
    converted = _old_softmax_model(out_shape, axis, op)
    assert op_counts(converted)["Flatten"] == 1, "the converter writes the adapter"
    restored = restore_softmax(converted)
    assert op_counts(restored)[op] == 1 and "Flatten" not in op_counts(restored)
    assert_same_outputs(converted, restored, {"x": randn((3, 4), 2)})
    stripped = canonize(restored, "prob")
    assert stripped.stripped == op and stripped.output == "logits"


def test_adapter_over_several_axes_is_kept():
    """Old Softmax(axis=1) over (N, 2, 5) normalises all 10 values jointly: not Softmax(axis=1)."""
    converted = _old_softmax_model((2, 5), axis=1)
    restored = restore_softmax(converted)
    assert op_counts(restored)["Flatten"] == 1
    assert_same_outputs(converted, restored, {"x": randn((3, 4), 2)})


def test_old_classifier_is_explained_from_its_logits():
    model = _old_softmax_model((5, 1, 1))
    explainer = onnx_lrp.Explainer(model)
    assert explainer.output_name == "logits"
    result = explainer.explain(randn((2, 4), 3), target=1)
    assert np.isfinite(result.relevance).all()
