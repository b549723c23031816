"""Add/Sub/Mul/Div/Neg/Sum/Mean: affine with a constant operand, sums of activations."""
import numpy as np
import pytest

from onnx_lrp.errors import UnsupportedOp

from .harness import F64, Case, away_from, check_op, linear_f32, node_model

SAMPLE = (2, 3, 4)
RNG = np.random.default_rng(7)


def const(*shape, low=None):
    c = RNG.standard_normal(shape)
    if low is not None:  # a divisor, kept away from zero
        c = np.sign(c) * (low + np.abs(c))
    return c.astype(np.float32)


def sq(p):
    return {k: v ** 2 for k, v in p.items()}


def sq_bias(p):
    return {"weight": p["weight"], "bias": p["bias"] ** 2}


C_B = const(3, 1)            # broadcast over the last axis
C_ROW = const(4)             # trailing axis only
C_FULL = const(*SAMPLE)
C_SCALAR = const()
C_DIV = const(3, 1, low=0.5)
C_UP = const(3, 1)           # broadcasts the (1, 4) sample up to (3, 4)

# name -> (op, inputs, sample shape, modify, replacement constant for the reference model)
AFFINE = {
    "Add_const_second_broadcast": ("Add", ["x", C_B], SAMPLE, sq_bias, C_B ** 2),
    "Add_const_first_row": ("Add", [C_ROW, "x"], SAMPLE, sq_bias, C_ROW ** 2),
    "Add_scalar": ("Add", ["x", C_SCALAR], SAMPLE, sq_bias, C_SCALAR ** 2),
    "Add_broadcasts_x_up": ("Add", ["x", C_UP], (1, 4), sq_bias, C_UP ** 2),
    "Sub_const_second": ("Sub", ["x", C_B], SAMPLE, sq_bias, -(C_B ** 2)),
    "Sub_const_first": ("Sub", [C_FULL, "x"], SAMPLE, sq_bias, C_FULL ** 2),
    "Sub_const_first_broadcasts_x_up": ("Sub", [C_UP, "x"], (1, 4), sq_bias, C_UP ** 2),
    "Mul_const_second_broadcast": ("Mul", ["x", C_B], SAMPLE, sq, C_B ** 2),
    "Mul_const_first_full": ("Mul", [C_FULL, "x"], SAMPLE, sq, C_FULL ** 2),
    "Mul_scalar": ("Mul", ["x", C_SCALAR], SAMPLE, sq, C_SCALAR ** 2),
    "Mul_broadcasts_x_up": ("Mul", [C_UP, "x"], (1, 4), sq, C_UP ** 2),
    "Div_const_second": ("Div", ["x", C_DIV], SAMPLE, sq, C_DIV ** 2),
    "Sum_with_const": ("Sum", ["x", C_B], SAMPLE, sq_bias, C_B ** 2),
    "Mean_with_const": ("Mean", ["x", C_ROW], SAMPLE, None, None),
}


@pytest.mark.parametrize("name", sorted(AFFINE))
def test_affine(name):
    op, inputs, sample, modify, replacement = AFFINE[name]
    model = node_model(op, sample, inputs)
    ref = node_model(op, sample, inputs, consts={"c0": replacement}) if modify else None
    case = check_op(model, sample, fd=F64 if op != "Mean" else linear_f32(), modify=modify, ref_model=ref).case
    assert case.handler.category_of(case.node, case.g) == "affine"


def test_mean_with_const_parameters():
    """Mean(x, c) = x/2 + c/2: the weight-modifying rules must see weight 1/2 and bias c/2."""
    model = node_model("Mean", SAMPLE, ["x", C_ROW])
    case = Case(model, SAMPLE)
    p = case.handler.params(case.node, case.g)
    np.testing.assert_allclose(np.broadcast_to(p["weight"], SAMPLE[-1:]), 0.5)
    np.testing.assert_allclose(np.broadcast_to(p["bias"], SAMPLE[-1:]), C_ROW / 2, rtol=1e-7)


def test_sum_with_two_consts():
    model = node_model("Sum", SAMPLE, ["x", C_B, C_ROW])
    ref = node_model("Sum", SAMPLE, ["x", C_B, C_ROW], consts={"c0": np.zeros_like(C_B), "c1": np.zeros_like(C_ROW)})
    check_op(model, SAMPLE, fd=F64, modify=lambda p: {"weight": p["weight"], "bias": 0 * p["bias"]}, ref_model=ref)


def test_neg():
    model = node_model("Neg", SAMPLE, ["x"])
    ref = node_model("Mul", SAMPLE, ["x", np.float32(-2.0)])  # weight -1 doubled
    check_op(model, SAMPLE, fd=F64, modify=lambda p: {"weight": 2 * p["weight"], "bias": p["bias"]}, ref_model=ref)


def test_div_of_a_constant_by_an_activation_is_an_activation():
    x = away_from(RNG.standard_normal((3, *SAMPLE)), [0.0], margin=0.3)
    checked = check_op(node_model("Div", SAMPLE, [C_DIV, "x"]), SAMPLE, x=x)
    assert checked.case.handler.category_of(checked.case.node, checked.case.g) == "activation"


# sums of activations: prefix nodes give the node several activations of different shapes
R_LAST = ("ReduceSum", ["x", np.array([2])], "r_last", {"keepdims": 1})     # (N, 2, 3, 1)
R_MID = ("ReduceSum", ["x", np.array([1])], "r_mid", {"keepdims": 1})       # (N, 2, 1, 4)
R_ALL = ("ReduceSum", ["x", np.array([1, 2, 3])], "r_all", {"keepdims": 1})  # (N, 1, 1, 1)

SUMS = {
    "Add_broadcast": ("Add", ["x", "r_last"], [R_LAST]),
    "Add_broadcast_first": ("Add", ["r_mid", "x"], [R_MID]),
    "Add_same_tensor_twice": ("Add", ["x", "x"], []),
    "Sub_broadcast": ("Sub", ["x", "r_mid"], [R_MID]),
    "Sub_broadcast_first": ("Sub", ["r_last", "x"], [R_LAST]),
    "Sum_three": ("Sum", ["r_last", "x", "r_mid"], [R_LAST, R_MID]),
    "Sum_single": ("Sum", ["x"], []),
    "Mean_three": ("Mean", ["x", "r_last", "r_all"], [R_LAST, R_ALL]),
    "Mean_two_small": ("Mean", ["r_last", "r_mid"], [R_LAST, R_MID]),
}


@pytest.mark.parametrize("name", sorted(SUMS))
def test_sum_of_activations(name):
    op, inputs, prefix = SUMS[name]
    model = node_model(op, SAMPLE, inputs, prefix=prefix)
    case = check_op(model, SAMPLE, fd=F64 if op != "Mean" else linear_f32()).case
    assert case.handler.category_of(case.node, case.g) == "sum"


def test_sum_of_activations_and_const_is_unsupported():
    model = node_model("Sum", SAMPLE, ["x", "r_last", C_B], prefix=[R_LAST])
    with pytest.raises(UnsupportedOp, match="constant"):
        Case(model, SAMPLE)


def test_product_of_activations_goes_to_the_product_pattern():
    """Not affine: the product pattern (onnx_lrp/ops/gating.py) takes it; ``r_last`` is a sum of x,
    a statistic, so the product is a normalisation with x the signal."""
    model = node_model("Mul", SAMPLE, ["x", "r_last"], prefix=[R_LAST])
    case = Case(model, SAMPLE)
    assert case.handler.category_of(case.node, case.g) == "normalize"
    assert case.rel == ["x", "r_last"]


def test_constant_over_activation():
    """``1 / sqrt(var + ε)`` as torch exports an RMSNorm: ``Div(c, x)``, an elementwise activation."""
    prefix = [("Mul", ["x", "x"], "sq", {}), ("Add", ["sq", np.float32(0.5)], "d", {})]
    model = node_model("Div", (4,), [np.float32(2.0), "d"], prefix=prefix)
    checked = check_op(model, (4,))
    assert checked.case.handler.category_of(checked.case.node, checked.case.g) == "activation"
