"""Every name the user gives (input, output, feed, composite, rule, node, op type, category,
attribution method, metric) is checked; an unknown one is an error that suggests close matches."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from onnx_lrp import rules
from onnx_lrp.attribution import resolve_method
from onnx_lrp.composites import EpsilonComposite
from onnx_lrp.errors import CompositeError, InvalidInput
from onnx_lrp.evaluation.settings import Gate
from onnx_lrp.names import close_matches
from onnx_lrp.rule_spec import parse_rule


def _model():
    w = numpy_helper.from_array(np.eye(3, dtype=np.float32), "weight")
    nodes = [helper.make_node("Add", ["pixels", "offset"], ["shifted"], name="add_offset"),
             helper.make_node("MatMul", ["shifted", "weight"], ["hidden"], name="dense_1"),
             helper.make_node("Relu", ["hidden"], ["logits"], name="relu_1")]
    graph = helper.make_graph(nodes, "names", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3]),
                                               helper.make_tensor_value_info("offset", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


X = np.ones((1, 3), np.float32)
PASS = rules.Pass()


@pytest.mark.parametrize("call, error, suggestion", [
    (lambda m: onnx_lrp.Explainer(m, input_name="pixel"), InvalidInput, "'pixels'"),
    (lambda m: onnx_lrp.Explainer(m, input_name="pixels", output="logit"), InvalidInput, "'logits'"),
    (lambda m: onnx_lrp.Explainer(m, input_name="pixels", output="hiden"), InvalidInput, "'hidden'"),
    (lambda m: onnx_lrp.Explainer(m, input_name="pixels").explain(X, feeds={"ofset": X}), InvalidInput, "'offset'"),
    (lambda m: onnx_lrp.Explainer(m, input_name="pixels").explain({"pixel": X}, feeds={"offset": X}), InvalidInput,
     "'pixels'"),
    (lambda m: onnx_lrp.Explainer(m, input_name="pixels", composite="epsilon_plus_flatt"), CompositeError,
     "'epsilon_plus_flat'"),
    (lambda m: onnx_lrp.Explainer(m, input_name="pixels", composite=EpsilonComposite(name_map={"dense1": PASS})),
     CompositeError, "'dense_1'"),
    (lambda m: onnx_lrp.Explainer(m, input_name="pixels", composite=EpsilonComposite(type_map={"Matmul": PASS})),
     CompositeError, "'MatMul'"),
    (lambda m: EpsilonComposite(category_map={"dense_": PASS}), CompositeError, "'dense'"),
    (lambda m: parse_rule("Epsilom(0.1)"), CompositeError, "'Epsilon'"),
    (lambda m: resolve_method("input_x_gradients"), InvalidInput, "'input_x_gradient'"),
    (lambda m: Gate.parse("aopc_mrf=0.5"), InvalidInput, "'aopc_morf'"),
])
def test_unknown_name_suggests_close_matches(call, error, suggestion):
    with pytest.raises(error, match=f"did you mean [^?]*{suggestion}"):
        call(_model())


def test_known_names_pass():
    e = onnx_lrp.Explainer(_model(), input_name="pixels", output="logits",
                           composite=EpsilonComposite(name_map={"dense_1": rules.Epsilon(0.1)}))
    assert e.explain(X, feeds={"offset": X}).relevance.shape == (1, 3)


def test_close_matches_puts_a_case_difference_first():
    assert close_matches("conv", ["Conv", "conv_1", "relu"])[:2] == ["Conv", "conv_1"]
    assert close_matches("zzz", ["Conv", "relu"]) == []
