"""Attribution methods on token ids (found by tools/fuzz.py: every method, LRP included, failed in
onnxruntime with "Unexpected input data type" because the attributor cast the ids to float32).
The gradient is given where the explanation starts, at the embedding output; methods that change
the input values refuse integer data with InvalidInput."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from onnx_lrp.attribution import attribute

RNG = np.random.default_rng(3)
TABLE = RNG.standard_normal((7, 3)).astype(np.float32)  # vocabulary 7, features 3
W = RNG.standard_normal((4 * 3, 5)).astype(np.float32)  # 4 tokens × 3 features -> 5 classes


def _token_model():
    """ids (N, 4) -> Gather(table) -> Tanh -> Flatten -> MatMul(W) -> logits (N, 5)."""
    nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed", axis=0),
             helper.make_node("Tanh", ["emb"], ["h"], name="act"),
             helper.make_node("Flatten", ["h"], ["flat"], name="flat"),
             helper.make_node("MatMul", ["flat", "w"], ["y"], name="dense")]
    graph = helper.make_graph(nodes, "tokens", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
                              [numpy_helper.from_array(TABLE, "table"), numpy_helper.from_array(W, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


IDS = np.array([[0, 3, 6, -1], [2, 2, 5, 1]], np.int64)  # a negative id counts from the end, as in Gather


def _reference():
    emb = TABLE[IDS].astype(np.float64)  # (2, 4, 3)
    y = np.tanh(emb).reshape(2, -1) @ W.astype(np.float64)
    return emb, y


@pytest.mark.parametrize("method", ["gradient", "saliency"])
def test_gradient_of_token_ids_is_at_the_embedding_output(method):
    emb, y = _reference()
    target = y.argmax(axis=1)
    want = (1 - np.tanh(emb) ** 2) * W.T.astype(np.float64)[target].reshape(2, 4, 3)
    got = attribute(onnx_lrp.Explainer(_token_model()), IDS, method=method)
    assert got.shape == emb.shape
    np.testing.assert_allclose(got, np.abs(want) if method == "saliency" else want, rtol=1e-5, atol=1e-6)


def test_lrp_through_attribute_equals_the_explanation():
    explainer = onnx_lrp.Explainer(_token_model(), composite="epsilon")
    got = attribute(explainer, IDS, target=[1, 4], method="lrp")
    np.testing.assert_array_equal(got, explainer.explain(IDS, target=[1, 4]).relevance)


@pytest.mark.parametrize("method", ["input_x_gradient", "integrated_gradients", "smoothgrad", "occlusion"])
def test_methods_that_change_input_values_refuse_token_ids(method):
    with pytest.raises(onnx_lrp.InvalidInput, match=f"method '{method}' needs floating-point input values"):
        attribute(onnx_lrp.Explainer(_token_model()), IDS, method=method)


def test_random_of_token_ids_has_the_embedding_outputs_shape():
    """Like the gradient and LRP, a random attribution is given at the embedding output."""
    explainer = onnx_lrp.Explainer(_token_model())
    got = attribute(explainer, IDS, method="random", seed=5)
    assert got.shape == _reference()[0].shape == attribute(explainer, IDS, method="gradient").shape
    np.testing.assert_array_equal(got, np.random.default_rng(5).standard_normal((2, 4, 3), dtype=np.float32))
