"""Conv, ConvTranspose, Gemm, MatMul: forward (also with changed weights) and VJP."""
import numpy as np
import pytest

from onnx_lrp.errors import UnsupportedOp

from .harness import F64, Case, check_op, linear_f32, node_model

RNG = np.random.default_rng(1234)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def square_params(p):
    return {k: v ** 2 for k, v in p.items()}


def conv_case(op, sample_shape, weight, bias=None, **attrs):
    inputs = ["x", weight] + ([bias] if bias is not None else [])
    model = node_model(op, sample_shape, inputs, **attrs)
    consts = {"c0": weight ** 2}
    if bias is not None:
        consts["c1"] = bias ** 2
    ref = node_model(op, sample_shape, inputs, consts=consts, **attrs)
    return model, ref


CONV_CASES = {
    "1d_stride_dilation_asym_pads": ((3, 11), (4, 3, 3), dict(strides=[2], pads=[1, 2], dilations=[2])),
    "1d_drops_trailing": ((2, 8), (3, 2, 3), dict(strides=[2])),
    "2d_plain": ((3, 5, 6), (4, 3, 3, 3), {}),
    "2d_depthwise": ((4, 7, 6), (4, 1, 3, 3), dict(group=4, strides=[2, 1], pads=[0, 1, 2, 1], dilations=[1, 2])),
    "2d_groups2_multiplier": ((4, 6, 5), (6, 2, 2, 3), dict(group=2, strides=[2, 2], pads=[1, 0, 0, 2])),
    "2d_odd_drops_trailing": ((2, 9, 8), (3, 2, 3, 2), dict(strides=[3, 3])),
    "2d_same_upper": ((2, 7, 6), (3, 2, 3, 4), dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    "2d_same_lower": ((2, 7, 6), (3, 2, 3, 4), dict(auto_pad="SAME_LOWER", strides=[2, 2])),
    "2d_same_upper_even_kernel": ((2, 6, 7), (2, 2, 4, 2), dict(auto_pad="SAME_UPPER", strides=[1, 3])),
    "2d_same_lower_even_kernel": ((2, 6, 7), (2, 2, 4, 2), dict(auto_pad="SAME_LOWER", strides=[1, 3])),
    "2d_valid": ((2, 7, 6), (3, 2, 3, 2), dict(auto_pad="VALID", strides=[2, 2])),
    "3d": ((2, 5, 4, 5), (3, 2, 2, 3, 2), dict(strides=[2, 1, 2], pads=[1, 0, 1, 0, 1, 1])),
    "3d_depthwise_same": ((3, 3, 4, 5), (3, 1, 2, 2, 3), dict(group=3, auto_pad="SAME_LOWER", strides=[2, 2, 2])),
    # stride 1 (the VJP may be a Conv with the flipped kernel rather than a ConvTranspose)
    "2d_s1_depthwise_dilated_asym": ((3, 7, 6), (3, 1, 3, 2), dict(group=3, dilations=[2, 3], pads=[2, 0, 1, 3])),
    "2d_s1_groups_multiplier": ((4, 5, 5), (6, 2, 2, 3), dict(group=2, pads=[1, 1, 0, 2])),
    "2d_s1_pads_beyond_kernel": ((2, 4, 5), (3, 2, 2, 2), dict(pads=[3, 0, 2, 4])),
    "2d_s1_same_lower_even": ((2, 5, 6), (3, 2, 4, 2), dict(auto_pad="SAME_LOWER")),
    "1d_s1_dilated": ((2, 9), (3, 2, 3), dict(dilations=[3], pads=[0, 4])),
    "3d_s1_groups": ((4, 3, 4, 3), (2, 2, 2, 1, 3), dict(group=2, pads=[1, 0, 2, 0, 1, 1])),
    # 73 KB of weights: large enough to be kept outside the protobuf (onnx_lrp.weights)
    "2d_large_weight": ((32, 4, 5), (64, 32, 3, 3), dict(pads=[1, 1, 1, 1], strides=[1, 2])),
}


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_conv(name, with_bias):
    sample, wshape, attrs = CONV_CASES[name]
    weight = rand(*wshape)
    bias = rand(wshape[0]) if with_bias else None
    model, ref = conv_case("Conv", sample, weight, bias, **attrs)
    check_op(model, sample, fd=linear_f32(), modify=square_params if with_bias else _square_weight, ref_model=ref)


def _square_weight(p):
    return {"weight": p["weight"] ** 2, "bias": p["bias"]}


CONV_T_CASES = {
    "1d_stride": ((3, 5), (3, 2, 3), dict(strides=[2])),
    "2d_stride_pads_outpad": ((4, 3, 4), (4, 3, 3, 3), dict(strides=[2, 2], pads=[1, 0, 1, 1],
                                                             output_padding=[1, 0])),
    "2d_groups": ((4, 3, 3), (4, 2, 2, 3), dict(group=2, strides=[2, 3], output_padding=[1, 2])),
    "2d_depthwise_dilated": ((3, 4, 3), (3, 1, 3, 2), dict(group=3, dilations=[2, 1], pads=[1, 0, 0, 1])),
    "2d_strided_dilated": ((2, 3, 4), (2, 2, 3, 2), dict(strides=[2, 3], dilations=[2, 1], pads=[1, 0, 2, 1],
                                                         output_padding=[1, 2])),
    "1d_no_bias_pads": ((3, 6), (3, 1, 4), dict(strides=[3], pads=[2, 1], output_padding=[2])),
    "3d": ((2, 2, 3, 2), (2, 2, 2, 2, 3), dict(strides=[2, 1, 2], pads=[0, 1, 0, 1, 0, 0],
                                               output_padding=[1, 0, 1])),
}


@pytest.mark.parametrize("name", sorted(CONV_T_CASES))
def test_conv_transpose(name):
    sample, wshape, attrs = CONV_T_CASES[name]
    weight = rand(*wshape)
    bias = rand(wshape[1] * attrs.get("group", 1))
    model, ref = conv_case("ConvTranspose", sample, weight, bias, **attrs)
    check_op(model, sample, fd=linear_f32(), modify=square_params, ref_model=ref)


@pytest.mark.parametrize("attrs", [dict(output_shape=[7, 9], strides=[2, 2]), dict(auto_pad="SAME_UPPER")])
def test_conv_transpose_output_shape_or_auto_pad_is_unsupported(attrs):
    model = node_model("ConvTranspose", (2, 4, 4), ["x", rand(2, 3, 3, 3)], **attrs)
    with pytest.raises(UnsupportedOp, match="output_shape or auto_pad"):
        Case(model, (2, 4, 4))


GEMM_CASES = {
    "plain": dict(b=(5, 4), c=(4,)),
    "transB": dict(b=(4, 5), c=(4,), transB=1),
    "alpha_beta_row_bias": dict(b=(5, 4), c=(1, 4), alpha=0.7, beta=1.3),
    "scalar_bias_transB": dict(b=(4, 5), c=(), transB=1, alpha=-1.5, beta=0.5),
    "no_bias": dict(b=(5, 4), c=None, alpha=2.0),
}


@pytest.mark.parametrize("name", sorted(GEMM_CASES))
def test_gemm(name):
    """The parameters are the effective weight alpha·B and bias beta·C: squaring them must give the
    Gemm whose alpha·B' and beta·C' are those squares."""
    spec = dict(GEMM_CASES[name])
    bshape, cshape = spec.pop("b"), spec.pop("c")
    weight = rand(*bshape)
    inputs = ["x", weight]
    alpha = spec.get("alpha", 1.0)
    consts = {"c0": (alpha * weight.astype(np.float64)) ** 2 / alpha}  # the effective weight is alpha·B
    if cshape is not None:
        c = rand(*cshape)
        inputs.append(c)
        beta = spec.get("beta", 1.0)
        consts["c1"] = (beta * c.astype(np.float64)) ** 2 / beta  # beta·C' = (beta·C)²
    model = node_model("Gemm", (5,), inputs, **spec)
    ref = node_model("Gemm", (5,), inputs, consts=consts, **spec)
    check_op(model, (5,), fd=F64, modify=square_params, ref_model=ref)


@pytest.mark.parametrize("transB", [0, 1])
def test_gemm_transA(transB):
    """A = x is (K, M): the rows of the output are x's columns, so x's first axis is a fixed size
    (it is contracted), and nothing can be checked per batch sample."""
    weight = rand(*((3, 6) if transB else (6, 3)))
    c = rand(3)
    model = node_model("Gemm", (4,), ["x", weight, c], batch=6, transA=1, transB=transB, alpha=0.5, beta=2.0)
    ref = node_model("Gemm", (4,), ["x", weight, c], batch=6, transA=1, transB=transB, alpha=0.5, beta=2.0,
                     consts={"c0": 0.5 * weight.astype(np.float64) ** 2, "c1": 2.0 * c.astype(np.float64) ** 2})
    check_op(model, (4,), fd=F64, modify=square_params, ref_model=ref)


MATMUL_CASES = {
    "data_first_2d": ((5,), ["x", (5, 3)]),
    "data_first_3d": ((2, 5), ["x", (5, 3)]),
    "data_first_4d": ((2, 3, 4), ["x", (4, 2)]),
    "const_first_3d": ((4, 6), [(3, 4), "x"]),
    "const_first_4d": ((2, 4, 3), [(5, 4), "x"]),
}


@pytest.mark.parametrize("name", sorted(MATMUL_CASES))
def test_matmul(name):
    sample, spec = MATMUL_CASES[name]
    inputs = [v if isinstance(v, str) else rand(*v) for v in spec]
    weight = next(v for v in inputs if not isinstance(v, str))
    model = node_model("MatMul", sample, inputs)
    ref = node_model("MatMul", sample, inputs, consts={"c0": weight ** 2})
    check_op(model, sample, fd=F64, modify=square_params, ref_model=ref)


@pytest.mark.parametrize("batch", ["N", 4])
def test_matmul_const_first_2d_data_contracts_batch(batch):
    """W @ x with 2-D x contracts x's axis 0, the batch: every output row mixes all samples."""
    weight = rand(3, 1) if batch == "N" else rand(3, 4)
    model = node_model("MatMul", (6,), [weight, "x"], batch=batch)
    with pytest.raises(UnsupportedOp, match="batch"):
        Case(model, (6,))


def test_matmul_of_two_activations_is_bilinear():
    """Not a dense layer: onnx_lrp/ops/attention.py takes it (tests/ops/test_attention.py)."""
    model = node_model("MatMul", (4, 4), ["x", "t"], prefix=[("Transpose", ["x"], "t", {"perm": [0, 2, 1]})])
    case = Case(model, (4, 4))
    assert case.handler.category_of(case.node, case.g) == "bilinear"
