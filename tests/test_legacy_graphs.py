"""Quirks of old exports (Caffe2 at opset 9, IR 3): weights listed as graph inputs, Dropout with an
unused mask output."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from onnx_lrp.canonize import remove_identities
from onnx_lrp.graph import load_model


def _ir3_model():
    w = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    b = np.full(3, 0.1, np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="gemm", transB=1),
             helper.make_node("Dropout", ["h"], ["d", "mask"], name="drop", ratio=0.5),
             helper.make_node("Relu", ["d"], ["y"], name="relu")]
    graph = helper.make_graph(
        nodes, "ir3",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 4]),  # IR 3: weights are inputs too
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 3
    onnx.checker.check_model(model)
    return model


def test_ir3_weights_as_inputs_become_plain_initializers_of_a_valid_model():
    model, _ = load_model(_ir3_model())
    assert [i.name for i in model.graph.input] == ["x"]
    assert model.ir_version >= 8, "opset 17 and initializers that are not inputs need a newer IR"
    onnx.checker.check_model(model)


def test_dropout_whose_mask_nobody_reads_is_removed():
    model, _ = load_model(_ir3_model())
    assert "Dropout" not in {n.op_type for n in remove_identities(model).graph.node}


def test_ir3_model_explains_and_its_canonized_form_reloads():
    explainer = onnx_lrp.Explainer(_ir3_model())
    result = explainer.explain(np.ones((1, 4), np.float32))
    assert np.isfinite(result.relevance).all()
    onnx_lrp.Explainer(explainer.model)  # the canonized model is itself a valid model
