"""Ops that only move data: Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Concat, Split, Slice,
Gather, Pad, Expand, Tile, Cast. Their VJPs route relevance, so they must be exact transposes."""
import numpy as np
import pytest

from onnx_lrp.errors import UnsupportedOp

from .harness import F64, Case, check_op, linear_f32, node_model

SAMPLE = (2, 3, 4)
I64 = np.int64
BIG = np.iinfo(np.int64).max
SMALL = np.iinfo(np.int64).min


def ints(*values):
    return np.array(values, I64)


RESHAPES = {
    "Flatten_axis1": ("Flatten", ["x"], {"axis": 1}),
    "Reshape_keep_batch": ("Reshape", ["x", ints(0, -1)], {}),
    "Reshape_split_axes": ("Reshape", ["x", ints(0, 6, 2, 2)], {}),
    "Reshape_infer_batch": ("Reshape", ["x", ints(-1, 4, 6)], {}),
    "Transpose": ("Transpose", ["x"], {"perm": [0, 2, 3, 1]}),
    "Transpose_swap": ("Transpose", ["x"], {"perm": [0, 3, 2, 1]}),
    "Unsqueeze": ("Unsqueeze", ["x", ints(1, -1)], {}),
    "Expand_channels": ("Expand", ["x", ints(1, 2, 3, 4)], {}),
    "Cast_to_float": ("Cast", ["x"], {"to": 1}),
    "Identity": ("Identity", ["x"], {}),
}


@pytest.mark.parametrize("name", sorted(RESHAPES))
def test_reshape_like(name):
    op, inputs, attrs = RESHAPES[name]
    check_op(node_model(op, SAMPLE, inputs, **attrs), SAMPLE, fd=F64 if op != "Cast" else linear_f32())


@pytest.mark.parametrize("axis", [2, -1])
def test_flatten_into_the_batch_axis(axis):
    """Flatten with axis > 1 folds channels into axis 0, so the output has no per-sample axis:
    checked on a fixed batch of 2, then the VJP at batch 3 must reshape back whatever the batch."""
    checked = check_op(node_model("Flatten", SAMPLE, ["x"], batch=2, axis=axis), SAMPLE, fd=F64)
    case = Case(node_model("Flatten", SAMPLE, ["x"], axis=axis), SAMPLE)
    emitted = case.emit(None)
    x = np.random.default_rng(0).standard_normal((3, *SAMPLE)).astype(np.float32)
    lead = axis % 4  # x has rank 4: axes [0, lead) become the rows
    rows = int(np.prod(x.shape[:lead]))
    grad = np.random.default_rng(1).standard_normal((rows, x.size // rows)).astype(np.float32)
    np.testing.assert_array_equal(emitted.run({"x": x, "grad0": grad})["vjp0"], grad.reshape(x.shape))
    assert checked.J.shape == (2 * 24, 2 * 24)


def test_squeeze():
    sample = (3, 1, 4, 1)
    check_op(node_model("Squeeze", sample, ["x", ints(2)]), sample, fd=F64)
    check_op(node_model("Squeeze", sample, ["x", ints(-1, 2)]), sample, fd=F64)


def test_cast_to_double():
    """The gradient arrives in float64 and must go back as float32."""
    model = node_model("Cast", SAMPLE, ["x"], out_dtype=np.float64, to=11)
    checked = check_op(model, SAMPLE, fd=linear_f32())
    assert checked.result["vjp0"].dtype == np.float32


def test_cast_to_half_vjp_casts_back():
    """A Cast to float16 is computed in float32 (models are explained in float32, see
    onnx_lrp.canonize.precision): the gradient arrives and leaves as float32, unrounded."""
    model = node_model("Cast", SAMPLE, ["x"], out_dtype=np.float16, to=10)
    case = Case(model, SAMPLE)
    emitted = case.emit(None)
    grad = np.random.default_rng(0).standard_normal((2, *SAMPLE)).astype(np.float32)
    result = emitted.run({"x": np.ones((2, *SAMPLE), np.float32), "grad0": grad})
    assert result["vjp0"].dtype == np.float32
    np.testing.assert_array_equal(result["vjp0"], grad.astype(np.float32))


def test_cast_from_half_keeps_the_gradient_in_float32():
    """x -> Cast(float16) -> Cast(float32): the second Cast's VJP must not round to float16."""
    model = node_model("Cast", SAMPLE, ["h"], prefix=[("Cast", ["x"], "h", {"to": 10})], to=1)
    case = Case(model, SAMPLE)
    emitted = case.emit(None)
    grad = (1 + np.random.default_rng(1).standard_normal((2, *SAMPLE)) * 1e-3).astype(np.float32)
    result = emitted.run({"x": np.ones((2, *SAMPLE), np.float32), "grad0": grad})
    assert result["vjp0"].dtype == np.float32
    np.testing.assert_array_equal(result["vjp0"], grad)  # float16 would round 1 + 1e-3 steps away


EXPANDS = {
    "middle": ((3, 1, 4), ints(1, 3, 2, 4)),
    "last_rank_lower_shape": ((3, 1), ints(3, 5)),
    "two_axes": ((1, 4, 1), ints(2, 4, 3)),
}


@pytest.mark.parametrize("name", sorted(EXPANDS))
def test_expand(name):
    sample, shape = EXPANDS[name]
    check_op(node_model("Expand", sample, ["x", shape]), sample, fd=F64)


# Concat: parts that are activations, the same activation twice, and a part that is a constant
# expanded to the batch (as a class token is), which carries no relevance.
R_LAST = ("ReduceSum", ["x", ints(3)], "r_last", {"keepdims": 1})  # (N, 2, 3, 1)
TOKEN = [("Shape", ["x"], "x_shape", {}),
         ("Expand", [np.linspace(-1, 1, 4, dtype=np.float32).reshape(1, 1, 1, 4), "x_shape"], "token", {})]

CONCATS = {
    "two_activations_last_axis": (["x", "r_last"], {"axis": 3}, [R_LAST]),
    "negative_axis": (["r_last", "x"], {"axis": -1}, [R_LAST]),
    "same_tensor_twice": (["x", "x"], {"axis": 2}, []),
    "with_constant_part": (["token", "x"], {"axis": 1}, TOKEN),
    "constant_part_between": (["x", "token", "x"], {"axis": 2}, TOKEN),
}


@pytest.mark.parametrize("name", sorted(CONCATS))
def test_concat(name):
    inputs, attrs, prefix = CONCATS[name]
    checked = check_op(node_model("Concat", SAMPLE, inputs, prefix=prefix, **attrs), SAMPLE, fd=F64)
    assert "token" not in checked.case.rel


def test_concat_along_batch_is_unsupported():
    with pytest.raises(UnsupportedOp, match="batch"):
        Case(node_model("Concat", SAMPLE, ["x", "x"], axis=0), SAMPLE)


SPLITS = {
    "sizes_all_used": (["x", ints(1, 2, 1)], {"axis": 3}, 3, None, 17),
    "sizes_first_and_last_used": (["x", ints(1, 2, 1)], {"axis": -1}, 3, [0, 2], 17),
    "middle_only": (["x", ints(3, 1)], {"axis": -1}, 2, [1], 17),
    "equal_parts_default": (["x"], {"axis": 3}, 2, [1], 17),
    "num_outputs_opset18": (["x"], {"axis": 1, "num_outputs": 2}, 2, [1], 18),
}


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_split(name):
    inputs, attrs, n, used, opset = SPLITS[name]
    model = node_model("Split", SAMPLE, inputs, n_outputs=n, used_outputs=used, opset=opset, **attrs)
    check_op(model, SAMPLE, fd=F64)


def test_split_along_batch_is_unsupported():
    model = node_model("Split", SAMPLE, ["x"], n_outputs=1, axis=0)
    with pytest.raises(UnsupportedOp, match="batch"):
        Case(model, SAMPLE)


SLICES = {
    "one_axis": ([ints(1), ints(3), ints(2)], None),
    "steps_2": ([ints(0), ints(4), ints(3), ints(2)], None),
    "negative_step": ([ints(-1), ints(SMALL), ints(3), ints(-1)], None),
    "negative_step_3": ([ints(3), ints(0), ints(2), ints(-2)], None),
    "multiple_axes": ([ints(1, 0, 2), ints(3, 1, 0), ints(2, 1, 3), ints(1, 1, -1)], None),
    "clamped_ends": ([ints(-2, 1), ints(BIG, 100), ints(3, 2)], None),
    "negative_start_and_axis": ([ints(-3), ints(-1), ints(-1)], None),
    "batch_axis_full": ([ints(0, 1), ints(BIG, 3), ints(0, 2)], None),
    "empty_along_axis": ([ints(3), ints(1), ints(3)], None),
}


@pytest.mark.parametrize("name", sorted(SLICES))
def test_slice(name):
    consts, _ = SLICES[name]
    check_op(node_model("Slice", SAMPLE, ["x", *consts]), SAMPLE, fd=F64)


def test_slice_of_the_batch_is_unsupported():
    with pytest.raises(UnsupportedOp, match="batch"):
        Case(node_model("Slice", SAMPLE, ["x", ints(0), ints(1), ints(0)]), SAMPLE)


GATHERS = {
    "scalar": (np.array(2, I64), 3),
    "scalar_negative": (np.array(-1, I64), 2),
    "1d": (ints(3, 0, 2), 3),
    "1d_duplicates": (ints(1, 1, 0, 1), 3),
    "1d_contiguous": (ints(1, 2), 2),
    "2d_negative_duplicates": (np.array([[0, -1], [2, 0], [-3, 1]], I64), 3),
    "axis_negative": (ints(-2, 0), -1),
}


@pytest.mark.parametrize("name", sorted(GATHERS))
def test_gather(name):
    indices, axis = GATHERS[name]
    check_op(node_model("Gather", SAMPLE, ["x", indices], axis=axis), SAMPLE, fd=F64)


def test_gather_along_batch_is_unsupported():
    with pytest.raises(UnsupportedOp, match="batch"):
        Case(node_model("Gather", SAMPLE, ["x", ints(0)]), SAMPLE)


PADS = {
    "constant_zero": (["x", ints(0, 1, 0, 2, 0, 0, 3, 1)], {}),
    "constant_value": (["x", ints(0, 0, 1, 1, 0, 1, 0, 2), np.float32(0.7)], {}),
    "constant_negative": (["x", ints(0, -1, 2, 0, 0, 0, -1, -2)], {}),
    "reflect": (["x", ints(0, 0, 2, 1, 0, 0, 1, 3)], {"mode": "reflect"}),
    "reflect_channels": (["x", ints(0, 1, 0, 0, 0, 1, 0, 0)], {"mode": "reflect"}),
    "edge": (["x", ints(0, 1, 1, 3, 0, 0, 2, 2)], {"mode": "edge"}),
    "edge_wide": (["x", ints(0, 0, 0, 5, 0, 0, 0, 4)], {"mode": "edge"}),
}


@pytest.mark.parametrize("name", sorted(PADS))
def test_pad(name):
    inputs, attrs = PADS[name]
    check_op(node_model("Pad", SAMPLE, inputs, **attrs), SAMPLE, fd=F64)


def test_pad_wrap_opset19():
    model = node_model("Pad", SAMPLE, ["x", ints(0, 0, 2, 1, 0, 1, -1, 3)], opset=19, mode="wrap")
    check_op(model, SAMPLE, fd=F64)


@pytest.mark.parametrize("mode", ["reflect", "edge"])
def test_pad_crops_then_copies(mode):
    """Negative and positive pads on one axis: onnxruntime crops first, then copies from what is left."""
    model = node_model("Pad", SAMPLE, ["x", ints(0, 0, -1, 2, 0, 0, 1, -1)], mode=mode)
    check_op(model, SAMPLE, fd=F64)


def test_pad_with_axes_opset18():
    model = node_model("Pad", SAMPLE, ["x", ints(2, -1, 1, 3), "", ints(-1, 2)], opset=18, mode="constant")
    check_op(model, SAMPLE, fd=F64)


def test_pad_of_the_batch_is_unsupported():
    with pytest.raises(UnsupportedOp, match="batch"):
        Case(node_model("Pad", SAMPLE, ["x", ints(1, 0, 0, 0, 0, 0, 0, 0)]), SAMPLE)


TILES = {
    "one_axis": ints(1, 1, 2, 1),
    "three_axes": ints(1, 2, 3, 2),
    "none": ints(1, 1, 1, 1),
}


@pytest.mark.parametrize("name", sorted(TILES))
def test_tile(name):
    check_op(node_model("Tile", SAMPLE, ["x", TILES[name]]), SAMPLE, fd=F64)


def test_tile_of_the_batch_is_unsupported():
    with pytest.raises(UnsupportedOp, match="batch"):
        Case(node_model("Tile", SAMPLE, ["x", ints(2, 1, 1, 1)]), SAMPLE)


@pytest.mark.parametrize("name", ["constant_value", "constant_negative", "reflect", "edge"])
def test_pad_of_axis_0_where_a_run_holds_one_sample(name):
    """A fixed batch of 1 holds one sample: axis 0 is no batch axis, so padding it mixes nothing
    and the VJP routes along it as along any other axis."""
    pads = {"constant_value": (ints(2, 0, 1, 0, 1, 0, 0, 2), {}),
            "constant_negative": (ints(0, 0, 1, -1, 3, 1, 0, 0), {}),
            "reflect": (ints(0, 1, 0, 0, 0, 1, 0, 0), {"mode": "reflect"}),
            "edge": (ints(2, 0, 1, 0, 1, 0, 0, 2), {"mode": "edge"})}[name]
    inputs = ["x", pads[0]] + ([np.float32(0.7)] if name == "constant_value" else [])
    check_op(node_model("Pad", SAMPLE, inputs, batch=1, **pads[1]), SAMPLE, fd=F64)


@pytest.mark.parametrize("reps", [ints(3, 1, 1, 1), ints(2, 2, 1, 3)])
def test_tile_of_axis_0_where_a_run_holds_one_sample(reps):
    check_op(node_model("Tile", SAMPLE, ["x", reps], batch=1), SAMPLE, fd=F64)

