"""Elementwise activations: forward and VJP (the derivative) against finite differences.

onnxruntime runs Relu, LeakyRelu, PRelu, Clip, Sigmoid, Tanh, Sqrt, Exp, Log, Abs, Reciprocal and
Pow in float64, so those are differentiated in float64 by onnxruntime itself; for the others
(Elu, Selu, Softplus, HardSigmoid, HardSwish, Erf, Softsign, Celu, Gelu) it has only float32
kernels, and the finite differences run on a float64 numpy reference. Inputs stay 0.05 away from
kinks, so the step 1e-6 never crosses one.
"""
import math

import numpy as np
import pytest

from onnx_lrp.errors import UnsupportedOp

from .harness import F64, Case, away_from, check_op, node_model, numpy_ref

SAMPLE = (2, 3, 4)
MARGIN = 0.05
_erf = np.vectorize(math.erf)


def normal(seed=0, scale=1.5):
    return np.random.default_rng(seed).standard_normal((3, *SAMPLE)) * scale


def away(values, *kinks):
    return away_from(values, kinks, MARGIN)


def positive(seed=0):
    return (np.random.default_rng(seed).uniform(0.3, 2.5, (3, *SAMPLE))).astype(np.float32)


def elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(x))


SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875

# op -> (inputs after x, attrs, x, finite differences, opset)
CASES = {
    "Relu": ([], {}, away(normal(), 0), F64),
    "LeakyRelu": ([], {"alpha": 0.1}, away(normal(), 0), F64),
    "LeakyRelu_default": ([], {}, away(normal(1), 0), F64),
    "PRelu_per_channel": ([np.array([[[0.2]], [[-0.3]]], np.float32)], {}, away(normal(), 0), F64),
    "PRelu_scalar": ([np.array([0.25], np.float32)], {}, away(normal(2), 0), F64),
    "PRelu_full": ([np.linspace(-0.5, 0.5, 12, dtype=np.float32).reshape(3, 4)], {}, away(normal(3), 0), F64),
    "Clip_min_max": ([np.float32(-0.5), np.float32(0.8)], {}, away(normal(), -0.5, 0.8), F64),
    "Clip_min_only": ([np.float32(0.1)], {}, away(normal(), 0.1), F64),
    "Clip_max_only": (["", np.float32(0.3)], {}, away(normal(), 0.3), F64),
    "Clip_none": ([], {}, normal(), F64),
    "Max_constant": ([np.float32(0.2)], {}, away(normal(), 0.2), F64),
    "Min_per_channel": ([np.array([[[0.1]], [[-0.4]]], np.float32)], {}, away(normal(), 0.1, -0.4), F64),
    "Sigmoid": ([], {}, normal(), F64),
    "Tanh": ([], {}, normal(), F64),
    "Sqrt": ([], {}, positive(), F64),
    "Exp": ([], {}, normal(scale=1.0), F64),
    "Log": ([], {}, positive(), F64),
    "Abs": ([], {}, away(normal(), 0), F64),
    "Reciprocal": ([], {}, away(normal(), 0, -0.3, 0.3), F64),
    "Pow_square": ([np.float32(2.0)], {}, normal(), F64),
    "Pow_cube": ([np.float32(3.0)], {}, normal(), F64),
    "Pow_sqrt": ([np.float32(0.5)], {}, positive(), F64),
    "Pow_negative_fraction": ([np.float32(-1.5)], {}, positive(), F64),
    "Pow_int_exponent": ([np.int64(2)], {}, normal(), F64),
    "Pow_per_channel": ([np.array([[[2.0]], [[3.0]]], np.float32)], {}, normal(), F64),
    "Elu": ([], {"alpha": 0.7}, away(normal(), 0), numpy_ref(lambda x: elu(x, 0.7))),
    "Selu": ([], {}, away(normal(), 0), numpy_ref(lambda x: SELU_GAMMA * elu(x, SELU_ALPHA))),
    "Selu_custom": ([], {"alpha": 1.2, "gamma": 0.9}, away(normal(), 0), numpy_ref(lambda x: 0.9 * elu(x, 1.2))),
    "Softplus": ([], {}, normal(scale=3.0), numpy_ref(lambda x: np.logaddexp(0.0, x))),
    "HardSigmoid": ([], {}, away(normal(scale=3.0), -2.5, 2.5),
                    numpy_ref(lambda x: np.clip(0.2 * x + 0.5, 0, 1))),
    "HardSigmoid_custom": ([], {"alpha": 0.5, "beta": 0.25}, away(normal(scale=2.0), -0.5, 1.5),
                           numpy_ref(lambda x: np.clip(0.5 * x + 0.25, 0, 1))),
    "HardSwish": ([], {}, away(normal(scale=3.0), -3, 3),
                  numpy_ref(lambda x: x * np.clip(x / 6 + 0.5, 0, 1))),
    "Erf": ([], {}, normal(), numpy_ref(_erf)),
    "Softsign": ([], {}, away(normal(scale=2.0), 0), numpy_ref(lambda x: x / (1 + np.abs(x)))),
    "Celu": ([], {"alpha": 1.5}, away(normal(), 0),
             numpy_ref(lambda x: np.maximum(x, 0) + np.minimum(0, 1.5 * np.expm1(x / 1.5)))),
    "Gelu": ([], {}, normal(scale=2.0), numpy_ref(lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))), 20),
    "Gelu_tanh": ([], {"approximate": "tanh"}, normal(scale=2.0),
                  numpy_ref(lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
                  20),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_activation(name):
    extra, attrs, x, fd, *opset = CASES[name]
    op = name.split("_")[0]
    model = node_model(op, SAMPLE, ["x", *extra], opset=opset[0] if opset else 17, **attrs)
    checked = check_op(model, SAMPLE, x=x, fd=fd)
    # an activation's Jacobian is diagonal: the VJP must not mix entries
    J = checked.J
    assert np.count_nonzero(J - np.diag(np.diag(J))) == 0, f"{name}: finite differences are not diagonal"


def test_activation_vjp_reads_its_input_not_a_replacement():
    """Rules may call forward with another input; the derivative is still taken at the node's x."""
    model = node_model("Relu", SAMPLE, ["x"])
    case = Case(model, SAMPLE)
    assert case.handler.params(case.node, case.g) is None
    assert case.handler.relevant_inputs(case.node, case.g) == [0]


def test_prelu_with_data_dependent_slope_is_unsupported():
    model = node_model("PRelu", SAMPLE, ["x", "s"], prefix=[("Sigmoid", ["x"], "s", {})])
    with pytest.raises(UnsupportedOp, match="depend on the data"):
        Case(model, SAMPLE)


def test_pow_with_data_dependent_exponent_is_unsupported():
    model = node_model("Pow", SAMPLE, ["x", "e"], prefix=[("Sigmoid", ["x"], "e", {})])
    with pytest.raises(UnsupportedOp, match="data-dependent exponent"):
        Case(model, SAMPLE)
