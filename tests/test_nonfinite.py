"""Relevance that is inf or NaN is never returned (found by tools/fuzz.py: a flipped exponent bit
made a weight 4e37; the output stayed finite, the relevance came back NaN without a word)."""
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp

FIXTURES = Path(__file__).parent / "fixtures" / "fuzz"


def _dense(weights):
    """x (N, 2) -> MatMul(W) -> y (N, 1)."""
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="dense")], "dense",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
                              [numpy_helper.from_array(np.asarray(weights, np.float32).reshape(2, 1), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_overflow_in_the_relevance_pass_is_an_error_naming_the_sample():
    """The fuzzer's model (``tools/fuzz.py --seed 7``, mutant 252: one bit flipped in a weight of
    ``fuzz_cases.base_models()``, kept as a fixture): the output is finite (1.75e37), the ZPlus/Flat
    relevance pass overflows."""
    model = FIXTURES / "bitflip_overflow.onnx"
    x = np.load(FIXTURES / "bitflip_overflow_x.npy")
    explainer = onnx_lrp.Explainer(str(model), composite="epsilon_plus_flat")
    with pytest.raises(onnx_lrp.NonFiniteRelevance, match=r"sample\(s\) \[0\] .*float32 overflowed .*1.75e\+37"):
        explainer.explain(x)


def test_a_model_whose_own_output_overflows_says_so():
    explainer = onnx_lrp.Explainer(_dense([3e38, 3e38]), composite="epsilon")
    with pytest.raises(onnx_lrp.NonFiniteRelevance, match="the model's own output is not finite"):
        explainer.explain(np.array([[2.0, 2.0]], np.float32))
