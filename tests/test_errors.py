"""Every failure is an OnnxLrpError subclass whose message names what failed and what to do."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import helper

import onnx_lrp
from model_builders import INT64, cnn, make_model, mlp, randn, vi
from onnx_lrp import (CompositeError, InvalidInput, InvalidTarget, ModelLoadError, OnnxLrpError, OutputError,
                      UnsupportedOp)


def test_error_hierarchy():
    for cls in (ModelLoadError, UnsupportedOp, InvalidInput, InvalidTarget, CompositeError, OutputError):
        assert issubclass(cls, OnnxLrpError)
    assert issubclass(OnnxLrpError, Exception)


@pytest.fixture(scope="module")
def exp():
    return onnx_lrp.Explainer(cnn())


# --- loading -----------------------------------------------------------------------------------

def test_missing_model_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(ModelLoadError) as info:
        onnx_lrp.Explainer(path)
    assert str(path) in str(info.value)


def test_directory_instead_of_a_file(tmp_path):
    with pytest.raises(ModelLoadError, match="is a directory") as info:
        onnx_lrp.Explainer(tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corrupt_file(tmp_path, seed):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(np.random.default_rng(seed).bytes(2048))
    with pytest.raises(ModelLoadError) as info:
        onnx_lrp.Explainer(path)
    assert "corrupt.onnx" in str(info.value)


def test_truncated_model_file(tmp_path):
    data = cnn().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        onnx_lrp.Explainer(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty.onnx"):
        onnx_lrp.Explainer(path)


def test_empty_modelproto():
    with pytest.raises(ModelLoadError, match="no graph nodes"):
        onnx_lrp.Explainer(onnx.ModelProto())


def test_invalid_model_dangling_input():
    model = make_model([helper.make_node("Add", ["x", "ghost"], ["y"], name="add")], [vi("x", [2])],
                       [vi("y", [2])], check=False)
    with pytest.raises(ModelLoadError, match="not a valid ONNX model.*ghost|ghost"):
        onnx_lrp.Explainer(model)


@pytest.mark.parametrize("bad", [None, 42, 3.5, ["model.onnx"]])
def test_model_argument_of_the_wrong_type(bad):
    with pytest.raises(ModelLoadError, match="path|ModelProto"):
        onnx_lrp.Explainer(bad)


def test_serialized_model_bytes_are_accepted():
    model = mlp()
    x = randn((2, 6))
    got = onnx_lrp.Explainer(model.SerializeToString()).explain(x).relevance
    np.testing.assert_array_equal(got, onnx_lrp.Explainer(model).explain(x).relevance)


def test_garbage_bytes_are_a_load_error():
    with pytest.raises(ModelLoadError):
        onnx_lrp.Explainer(b"\x00\xff not a model")


@pytest.mark.parametrize("first_dim", [10**12, 7])
def test_initializer_whose_data_does_not_match_its_dims(first_dim):
    """A weight declaring more values than it holds is a load error naming it (it crashed with a
    bare ValueError while the weights were moved out of the protobuf, before the checker ran)."""
    model = cnn()
    weight = next(t for t in model.graph.initializer if t.name == "w2")
    weight.dims[0] = first_dim
    with pytest.raises(ModelLoadError, match=r"w2"):  # named by the detacher or the checker
        onnx_lrp.Explainer(model.SerializeToString())


@pytest.mark.parametrize("weight", ["w1", "w2", "bf"])
def test_initializer_of_an_unknown_element_type(weight):
    """One flipped bit can make an element type no ONNX type has; the checker lets it through and
    reading the weight crashed with KeyError (found by tools/fuzz.py)."""
    model = cnn()
    next(t for t in model.graph.initializer if t.name == weight).data_type = 65
    with pytest.raises(ModelLoadError, match=weight):
        onnx_lrp.Explainer(model.SerializeToString())


@pytest.mark.parametrize("name", ["conv1", "w1", "logits"])
def test_name_that_is_not_utf8(name):
    """One flipped bit in a name leaves bytes that are not UTF-8: the parser hands them over as
    bytes, the checker accepts them, and naming the nodes crashed with UnicodeDecodeError (found
    by tools/fuzz.py)."""
    data = cnn(softmax=False).SerializeToString()
    damaged = name[:-1].encode() + b"\xf4"
    assert data.count(name.encode()) >= 1
    with pytest.raises(ModelLoadError, match="not UTF-8 text"):
        onnx_lrp.Explainer(data.replace(name.encode(), damaged))


def test_output_name_that_does_not_exist():
    with pytest.raises(InvalidInput, match=r"'nope'.*\['prob'\]"):
        onnx_lrp.Explainer(cnn(), output="nope")


def test_integer_output_named_as_the_one_to_explain():
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["logits"], name="fc"),
                        helper.make_node("ArgMax", ["logits"], ["label"], name="am", axis=1, keepdims=0)],
                       [vi("x", ["N", 4])], [vi("label", ["N"], INT64), vi("logits", ["N", 3])],
                       {"w": randn((4, 3), 203)})
    with pytest.raises(OnnxLrpError, match="'label'"):
        onnx_lrp.Explainer(model, output="label").explain(randn((2, 4)))


def test_model_without_float_input():
    model = make_model([helper.make_node("Cast", ["ids"], ["y"], name="cast", to=onnx.TensorProto.FLOAT)],
                       [vi("ids", ["N", 3], INT64)], [vi("y", ["N", 3])])
    with pytest.raises(InvalidInput, match="no floating-point input.*'ids'"):
        onnx_lrp.Explainer(model)


# --- input array -------------------------------------------------------------------------------

def test_wrong_rank_hints_at_a_batch_axis(exp):
    with pytest.raises(InvalidInput) as info:
        exp.explain(randn((3, 8, 8)))
    msg = str(info.value)
    assert "'x'" in msg and "rank 4" in msg and "x[None]" in msg


def test_wrong_rank_far_off_has_no_batch_hint(exp):
    with pytest.raises(InvalidInput) as info:
        exp.explain(randn((8, 8)))
    assert "rank 4" in str(info.value) and "x[None]" not in str(info.value)


def test_wrong_shape_names_the_axis(exp):
    with pytest.raises(InvalidInput) as info:
        exp.explain(randn((2, 3, 9, 8)))
    msg = str(info.value)
    assert "(2, 3, 9, 8)" in msg and "axis 2" in msg and "8" in msg


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_integer_dtype(exp, dtype):
    with pytest.raises(InvalidInput, match="floating point.*astype"):
        exp.explain(np.ones((1, 3, 8, 8), dtype))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf(exp, bad):
    x = randn((2, 3, 8, 8))
    x[1, 2, 3, 4] = bad
    x[0, 0, 0, 0] = bad
    with pytest.raises(InvalidInput, match="2 NaN/Inf"):
        exp.explain(x)


def test_empty_batch(exp):
    with pytest.raises(InvalidInput, match="empty"):
        exp.explain(np.zeros((0, 3, 8, 8), np.float32))


# --- target ------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [5, 100, -2, [0, 5]])
def test_target_out_of_range_names_the_valid_range(exp, target):
    with pytest.raises(InvalidTarget) as info:
        exp.explain(randn((2, 3, 8, 8)), target=target)
    msg = str(info.value)
    assert "0..4" in msg and "5 outputs" in msg


@pytest.mark.parametrize("target", [[0, 1, 2], [[0], [1]], np.zeros((2, 1), np.int64), [1]])
def test_target_of_the_wrong_shape(exp, target):
    with pytest.raises(InvalidTarget, match=r"\(2,\)"):
        exp.explain(randn((2, 3, 8, 8)), target=target)


@pytest.mark.parametrize("target", [1.0, "cat", [0.5, 1.5], True])
def test_target_of_the_wrong_type(exp, target):
    with pytest.raises(InvalidTarget, match="None, an int"):
        exp.explain(randn((2, 3, 8, 8)), target=target)


# --- composites --------------------------------------------------------------------------------

def test_unknown_composite_lists_the_names():
    with pytest.raises(CompositeError) as info:
        onnx_lrp.Explainer(mlp(), composite="epsilon_plus_flatt")
    msg = str(info.value)
    assert "'epsilon_plus_flatt'" in msg
    for name in onnx_lrp.composites.names():
        assert name in msg


def test_composite_of_the_wrong_type():
    with pytest.raises(CompositeError, match="42"):
        onnx_lrp.Explainer(mlp(), composite=42)


def test_epsilon_gamma_box_without_bounds():
    with pytest.raises(CompositeError, match="low=.*high="):
        onnx_lrp.Explainer(mlp(), composite="epsilon_gamma_box")


def test_unknown_composite_keyword():
    with pytest.raises(CompositeError, match="epsilon_plus"):
        onnx_lrp.Explainer(mlp(), composite="epsilon_plus", gamma=0.5)


def test_bounds_that_do_not_broadcast_to_the_input():
    exp = onnx_lrp.Explainer(cnn(), composite="epsilon_gamma_box", low=np.zeros(7), high=np.ones(7))
    with pytest.raises(CompositeError, match="conv1|bound"):
        exp.explain(randn((1, 3, 8, 8)))


# --- unsupported ops ---------------------------------------------------------------------------

def _einsum_model(name="mix"):
    w = randn((4, 3), 200)
    # an outer product over j, not a dense layer (``ij,jk->ik`` is one, rewritten into a MatMul)
    return make_model([helper.make_node("Einsum", ["x", "w"], ["h"], name=name, equation="ij,jk->ijk"),
                       helper.make_node("Relu", ["h"], ["y"], name="relu")],
                      [vi("x", ["N", 4])], [vi("y", ["N", 4, 3])], {"w": w})


def _topk_model():
    w = randn((3, 2), 201)
    return make_model([helper.make_node("TopK", ["x", "k"], ["vals", "idx"], name="top3", axis=1),
                       helper.make_node("MatMul", ["vals", "w"], ["y"], name="mm")],
                      [vi("x", ["N", 5])], [vi("y", ["N", 2])], {"w": w, "k": np.array([3], np.int64)})


@pytest.mark.parametrize("build, node, op, shape", [(_einsum_model, "mix", "Einsum", (2, 4)),
                                                    (_topk_model, "top3", "TopK", (2, 5))])
def test_unsupported_op_names_node_op_and_override(build, node, op, shape):
    with pytest.raises(UnsupportedOp) as info:
        onnx_lrp.Explainer(build()).explain(randn(shape))
    msg = str(info.value)
    assert f"'{node}'" in msg and f"'{op}'" in msg
    assert "name_map" in msg, "the message says how to override the rule for this node"


def test_unsupported_unnamed_node_gets_a_name_in_the_message():
    with pytest.raises(UnsupportedOp, match="'Einsum_0'.*'Einsum'"):
        onnx_lrp.Explainer(_einsum_model(name="")).explain(randn((2, 4)))


def test_unsupported_op_off_the_data_path_is_fine():
    """A TopK on a constant is folded away and never needs a rule."""
    table = randn((6,), 202)
    model = make_model([helper.make_node("TopK", ["table", "k"], ["vals", "idx"], name="top", axis=0),
                        helper.make_node("Mul", ["x", "vals"], ["y"], name="mul")],
                       [vi("x", ["N", 2])], [vi("y", ["N", 2])], {"table": table, "k": np.array([2], np.int64)})
    res = onnx_lrp.Explainer(model).explain(randn((3, 2)))
    assert res.relevance.shape == (3, 2)


# --- saving ------------------------------------------------------------------------------------

def _listing(path):
    return sorted(os.listdir(path))


def test_save_into_a_missing_directory(exp, tmp_path):
    target = tmp_path / "missing" / "m.onnx"
    with pytest.raises(OutputError, match="missing"):
        exp.save(target)
    assert _listing(tmp_path) == []


def test_save_onto_a_directory_writes_nothing(exp, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputError, match="taken"):
        exp.save(tmp_path / "taken")
    assert _listing(tmp_path) == ["taken"] and _listing(tmp_path / "taken") == []


def test_save_below_a_regular_file(exp, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputError, match="file.txt"):
        exp.save(tmp_path / "file.txt" / "m.onnx")
    assert _listing(tmp_path) == ["file.txt"]


@pytest.mark.parametrize("elem", [onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16])
def test_non_float32_model_is_explained_in_float32(elem):
    """The explainer graph is float32; a double or half model is converted, and a note says so."""
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                       [vi("x", ["N", 3], elem)], [vi("y", ["N", 3], elem)])
    x = np.array([[1.0, -2.0, 3.0]], onnx.helper.tensor_dtype_to_np_dtype(elem))
    e = onnx_lrp.Explainer(model, composite="epsilon").explain(x, target=2)
    assert e.relevance.dtype == np.float32
    np.testing.assert_array_equal(e.relevance, [[0.0, 0.0, 3.0]])
    assert any("float32" in note for note in e.notes)


def test_input_name_of_an_integer_input_starts_at_its_first_float_tensor():
    """Integers carry no relevance: explaining ids explains the float tensor cast from them; the
    other input must then be fed."""
    model = make_model([helper.make_node("Cast", ["ids"], ["f"], name="cast", to=onnx.TensorProto.FLOAT),
                        helper.make_node("Add", ["f", "x"], ["y"], name="add")],
                       [vi("ids", ["N", 3], INT64), vi("x", ["N", 3])], [vi("y", ["N", 3])])
    exp = onnx_lrp.Explainer(model, input_name="ids", composite="epsilon")
    ids, x = np.array([[1, 2, 3]]), randn((1, 3))
    with pytest.raises(InvalidInput, match=r"also reads.*\['x'\].*feeds="):
        exp.explain(ids)
    res = exp.explain(ids, target=2, feeds={"x": x})
    assert res.sources == {"ids": "f"}
    assert any("'f'" in note for note in res.notes)
    # x is a constant added to f (Pass rule): the whole explained output reaches f
    np.testing.assert_allclose(res.relevance, [[0, 0, 3 + x[0, 2]]], rtol=1e-6)


def test_session_that_onnxruntime_rejects_is_an_onnx_lrp_error():
    from onnx_lrp.executor import CPU, make_session
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
                       [vi("x", ["N", 3])], [vi("y", ["N", 2])], {"w": np.ones((3, 2))}, check=False)
    model.graph.name = "typed_wrong"
    with pytest.raises(OnnxLrpError, match="'typed_wrong'.*CPUExecutionProvider"):
        make_session(model, [CPU])
