"""fold_constants: Constant nodes become initializers; nodes computed only from constants are folded."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from canon_helpers import (INT64, assert_same_outputs, init_names, init_value, make_model, op_counts, randn,
                           run, vi)
from onnx_lrp.canonize import fold_constants


def _constant(name, out, **attr):
    return helper.make_node("Constant", [], [out], name=name, **attr)


@pytest.mark.parametrize("attr, value", [
    ({"value": numpy_helper.from_array(np.array([1.5, -2.0, 0.25], np.float32))},
     np.array([1.5, -2.0, 0.25], np.float32)),
    ({"value_float": -0.75}, np.float32(-0.75)),
    ({"value_floats": [0.5, -1.0, 2.0]}, np.array([0.5, -1.0, 2.0], np.float32)),
])
def test_float_constant_becomes_initializer(attr, value):
    model = make_model(
        [_constant("c", "k", **attr), helper.make_node("Mul", ["x", "k"], ["y"], name="mul")],
        [vi("x", [2, 3])], [vi("y", [2, 3])])
    folded = fold_constants(model)
    assert op_counts(folded) == {"Mul": 1}
    folded_value = init_value(folded, "k")
    assert folded_value.dtype == np.float32 and folded_value.shape == np.shape(value)
    np.testing.assert_array_equal(folded_value, value)
    assert_same_outputs(model, folded, {"x": randn((2, 3))})


def test_value_ints_constant_becomes_initializer():
    model = make_model(
        [_constant("c", "shape", value_ints=[3, -1]),
         helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")],
        [vi("x", [2, 3])], [vi("y", [3, 2])])
    folded = fold_constants(model)
    assert op_counts(folded) == {"Reshape": 1}
    value = init_value(folded, "shape")
    assert value.dtype == np.int64
    np.testing.assert_array_equal(value, [3, -1])
    assert_same_outputs(model, folded, {"x": randn((2, 3))})


def test_value_int_constant_and_its_unsqueeze_are_folded():
    model = make_model(
        [_constant("c", "n", value_int=6),
         _constant("z", "zero", value_ints=[0]),
         helper.make_node("Unsqueeze", ["n", "zero"], ["shape"], name="unsq"),
         helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")],
        [vi("x", [2, 3])], [vi("y", [6])])
    folded = fold_constants(model)
    assert op_counts(folded) == {"Reshape": 1}, "constant shape arithmetic must be folded away"
    value = init_value(folded, "shape")
    assert value.dtype == np.int64
    np.testing.assert_array_equal(value, [6])
    assert init_names(folded) == {"shape"}
    assert_same_outputs(model, folded, {"x": randn((2, 3))})


def test_scalar_constant_keeps_rank_zero():
    """A scalar Gather index drops the axis; folding must not turn it into shape (1,)."""
    model = make_model(
        [_constant("c", "idx", value=numpy_helper.from_array(np.array(1, np.int64))),
         helper.make_node("Gather", ["x", "idx"], ["y"], name="gather", axis=1)],
        [vi("x", [2, 3, 4])], [vi("y", [2, 4])])
    folded = fold_constants(model)
    assert op_counts(folded) == {"Gather": 1}
    assert init_value(folded, "idx").shape == ()
    assert_same_outputs(model, folded, {"x": randn((2, 3, 4))})
    assert run(folded, {"x": randn((2, 3, 4))})["y"].shape == (2, 4)


def test_transposed_weight_is_folded():
    """An exporter may store W^T and Transpose it at run time (e.g. torch's Linear via MatMul)."""
    w_t = randn((4, 3), 1)
    model = make_model(
        [helper.make_node("Transpose", ["w_t"], ["w"], name="wt", perm=[1, 0]),
         helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        [vi("x", [2, 3])], [vi("y", [2, 4])], {"w_t": w_t})
    folded = fold_constants(model)
    assert op_counts(folded) == {"MatMul": 1}
    np.testing.assert_array_equal(init_value(folded, "w"), w_t.T)
    assert "w_t" not in init_names(folded), "the unused source initializer must be dropped"
    assert_same_outputs(model, folded, {"x": randn((2, 3))})


def test_cast_weight_is_folded():
    """Half-precision weights cast to float at run time."""
    w16 = randn((5, 3, 3, 3), 2).astype(np.float16)
    model = make_model(
        [helper.make_node("Cast", ["w16"], ["w"], name="cast", to=TensorProto.FLOAT),
         helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])],
        [vi("x", [1, 3, 6, 6])], [vi("y", [1, 5, 6, 6])], {"w16": w16})
    folded = fold_constants(model)
    assert op_counts(folded) == {"Conv": 1}
    assert init_value(folded, "w").dtype == np.float32
    np.testing.assert_array_equal(init_value(folded, "w"), w16.astype(np.float32))
    assert_same_outputs(model, folded, {"x": randn((1, 3, 6, 6))})


def test_reshaped_weight_through_constant_shape_is_folded():
    """Weight stored flat, reshaped with a Constant shape, then transposed: a chain of foldable nodes."""
    flat = randn((4 * 6,), 3)
    model = make_model(
        [_constant("shape_c", "shape", value=numpy_helper.from_array(np.array([4, 6], np.int64))),
         helper.make_node("Reshape", ["flat", "shape"], ["w46"], name="reshape"),
         helper.make_node("Transpose", ["w46"], ["w64"], name="transpose", perm=[1, 0]),
         helper.make_node("Gemm", ["x", "w64", "b"], ["y"], name="gemm")],
        [vi("x", [2, 6])], [vi("y", [2, 4])], {"flat": flat, "b": randn((4,), 4)})
    folded = fold_constants(model)
    assert op_counts(folded) == {"Gemm": 1}
    gemm = folded.graph.node[0]
    np.testing.assert_array_equal(init_value(folded, gemm.input[1]), flat.reshape(4, 6).T)
    assert init_names(folded) == {"w64", "b"}
    assert_same_outputs(model, folded, {"x": randn((2, 6))})


def test_nodes_reading_the_data_input_are_kept():
    model = make_model(
        [_constant("c", "two", value_float=2.0),
         helper.make_node("Mul", ["x", "two"], ["h"], name="mul"),
         helper.make_node("Shape", ["x"], ["s"], name="shape"),
         helper.make_node("Reshape", ["h", "s"], ["y"], name="reshape")],
        [vi("x", ["N", 3])], [vi("y", ["N", 3])])
    folded = fold_constants(model)
    assert op_counts(folded) == {"Mul": 1, "Shape": 1, "Reshape": 1}
    assert_same_outputs(model, folded, {"x": randn((4, 3))})


def test_random_generators_are_not_folded():
    model = make_model(
        [helper.make_node("RandomNormal", [], ["noise"], name="rand", shape=[2, 3], dtype=TensorProto.FLOAT),
         helper.make_node("Add", ["x", "noise"], ["y"], name="add")],
        [vi("x", [2, 3])], [vi("y", [2, 3])])
    folded = fold_constants(model)
    assert op_counts(folded) == {"RandomNormal": 1, "Add": 1}


def test_unfoldable_constant_attribute_is_left_in_place():
    """A Constant holding strings (a label table) cannot be an initializer of a numeric graph; it
    must not abort canonization."""
    model = make_model(
        [_constant("labels", "names", value_strings=["cat", "dog"]),
         helper.make_node("Relu", ["x"], ["y"], name="relu")],
        [vi("x", [2, 3])], [vi("y", [2, 3]), vi("names", [2], TensorProto.STRING)])
    folded = fold_constants(model)
    assert op_counts(folded)["Relu"] == 1
    out = run(folded, {"x": randn((2, 3))})
    assert list(out["names"]) == ["cat", "dog"]


def test_unnamed_nodes_are_folded_individually():
    """Passes are public; a raw model may have no node names at all."""
    w_t = randn((4, 3), 1)
    model = make_model(
        [helper.make_node("Transpose", ["w_t"], ["w"], perm=[1, 0]),
         helper.make_node("MatMul", ["x", "w"], ["h"]),
         helper.make_node("Relu", ["h"], ["y"])],
        [vi("x", [2, 3])], [vi("y", [2, 4])], {"w_t": w_t})
    folded = fold_constants(model)
    assert op_counts(folded) == {"MatMul": 1, "Relu": 1}
    assert_same_outputs(model, folded, {"x": randn((2, 3))})


def test_int64_shape_chain_of_constants_is_evaluated():
    model = make_model(
        [_constant("a", "a", value_ints=[2, 3]),
         _constant("b", "b", value_ints=[1]),
         helper.make_node("Concat", ["b", "a"], ["shape"], name="concat", axis=0),
         helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")],
        [vi("x", [6])], [vi("y", [1, 2, 3])])
    folded = fold_constants(model)
    assert op_counts(folded) == {"Reshape": 1}
    np.testing.assert_array_equal(init_value(folded, "shape"), [1, 2, 3])
    assert init_value(folded, "shape").dtype == np.int64
    assert [t.data_type for t in folded.graph.initializer] == [INT64]
    assert_same_outputs(model, folded, {"x": randn((6,))})
