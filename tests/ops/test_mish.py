"""Mish: forward and VJP against float64 finite differences of a numpy reference; relevance passes."""
import numpy as np

import onnx_lrp

from .harness import check_op, node_model, numpy_ref

SAMPLE = (2, 3, 4)


def mish(x):
    return x * np.tanh(np.logaddexp(0.0, x))


def test_mish_forward_and_vjp():
    model = node_model("Mish", SAMPLE, ["x"], opset=18)
    x = np.random.default_rng(0).standard_normal((3, *SAMPLE)) * 2.0
    checked = check_op(model, SAMPLE, x=x, fd=numpy_ref(mish))
    J = checked.J
    assert np.count_nonzero(J - np.diag(np.diag(J))) == 0, "an activation's Jacobian is diagonal"
    assert checked.case.handler.category_of(checked.case.node, checked.case.g) == "activation"


def test_mish_passes_relevance_and_its_gradient_is_the_derivative():
    model = node_model("Mish", SAMPLE, ["x"], opset=18)
    x = np.random.default_rng(1).standard_normal((2, *SAMPLE)).astype(np.float32)
    explanation = onnx_lrp.Explainer(model, composite="epsilon").explain(x, target=5)
    expected = np.zeros_like(x).reshape(2, -1)
    expected[:, 5] = mish(x.astype(np.float64)).reshape(2, -1)[:, 5]  # Pass: R = y at the target
    np.testing.assert_allclose(explanation.relevance.reshape(2, -1), expected, rtol=1e-5, atol=1e-6)
