"""LayerNormalization / InstanceNormalization: exact VJP; Pass (AttnLRP's identity) by default."""
import numpy as np
import pytest

from onnx_lrp.errors import UnsupportedOp

from .harness import Case, check_op, node_model, numpy_ref

RNG = np.random.default_rng(5)


def layer_norm_ref(axis, eps, scale, bias):
    def f(x):
        axes = tuple(range(axis % x.ndim, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * scale + bias
    return f


@pytest.mark.parametrize("sample,axis", [((4, 6), -1), ((3, 5), 1), ((2, 3, 4), -2), ((5,), -1)])
def test_layer_normalization(sample, axis):
    norm_shape = sample[axis - 1:] if axis > 0 else sample[axis:]  # axis counts the batch
    scale = RNG.uniform(0.5, 1.5, norm_shape).astype(np.float32)
    bias = RNG.standard_normal(norm_shape).astype(np.float32)
    model = node_model("LayerNormalization", sample, ["x", scale, bias], axis=axis, epsilon=1e-3)
    checked = check_op(model, sample, fd=numpy_ref(layer_norm_ref(axis, 1e-3, scale.astype(np.float64),
                                                                 bias.astype(np.float64))))
    assert checked.case.handler.category_of(checked.case.node, checked.case.g) == "normalize"


def test_instance_normalization():
    sample = (3, 4, 5)
    scale = RNG.uniform(0.5, 1.5, 3).astype(np.float32)
    bias = RNG.standard_normal(3).astype(np.float32)

    def ref(x):
        mean = x.mean(axis=(2, 3), keepdims=True)
        var = ((x - mean) ** 2).mean(axis=(2, 3), keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5) * scale.reshape(1, 3, 1, 1) + bias.reshape(1, 3, 1, 1)

    model = node_model("InstanceNormalization", sample, ["x", scale, bias], epsilon=1e-5)
    check_op(model, sample, fd=numpy_ref(ref))


def test_layer_normalization_with_used_statistics_is_unsupported():
    scale, bias = np.ones(4, np.float32), np.zeros(4, np.float32)
    model = node_model("LayerNormalization", (3, 4), ["x", scale, bias], n_outputs=2, used_outputs=[0, 1])
    with pytest.raises(UnsupportedOp, match="inverse standard deviation"):
        Case(model, (3, 4))
