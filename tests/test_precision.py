"""Precision variants: float16 / bfloat16 / float64 models and QDQ-quantized models are explained,
in float32, with relevance that agrees with the float32 model's; integer-only forms are refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

import onnx_lrp
from onnx_lrp.errors import UnsupportedOp
from tests.precision_models import convert_all, make_variant, quantize_qdq

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cifar():
    model = onnx.load(ROOT / "models" / "cifar10_cnn.onnx")
    x = np.load(ROOT / "models" / "samples" / "cat_cifar10.npy").astype(np.float32)
    rng = np.random.default_rng(0)
    x = np.concatenate([x, x + rng.normal(0, 0.1, x.shape).astype(np.float32)])
    return model, x, onnx_lrp.Explainer(model).explain(x)


def _pearson(a, b) -> float:
    return min(np.corrcoef(p.ravel(), q.ravel())[0, 1] for p, q in zip(a, b))


def _as_written(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """onnxruntime's output of ``model`` unoptimised (no QDQ fusion into integer kernels)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    vi = model.graph.input[0]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
    return ort.InferenceSession(model.SerializeToString(), options).run(None, {vi.name: x.astype(dtype)})[0]


@pytest.mark.parametrize("variant", ["float16", "bfloat16", "float64", "float16-casts"])
def test_float_variants_explained_in_float32(cifar, variant):
    model, x, ref = cifar
    e = onnx_lrp.Explainer(make_variant(model, variant, x)).explain(x, target=ref.target)
    assert e.relevance.dtype == np.float32
    assert _pearson(e.relevance, ref.relevance) > 0.999
    np.testing.assert_allclose(e.conservation(), ref.conservation(), atol=0.01)
    if variant != "float16-casts":  # the casts inserted there keep float32 at the interface
        assert any(variant.split("-")[0] in note and "float32" in note for note in e.notes), e.notes


def test_float16_output_is_the_float16_models_up_to_rounding(cifar):
    model, x, ref = cifar
    half = convert_all(model, TensorProto.FLOAT16)
    e = onnx_lrp.Explainer(half).explain(x.astype(np.float16))
    # the float16 forward rounds every activation (relative 2**-11); the float32 one does not
    np.testing.assert_allclose(e.output, _as_written(half, x).astype(np.float32), rtol=5e-3, atol=2e-2)
    assert (e.prediction == ref.prediction).all()


@pytest.mark.parametrize("per_channel", [False, True])
def test_qdq_model_output_equals_the_models_and_relevance_agrees(cifar, per_channel):
    model, x, ref = cifar
    quantized = quantize_qdq(model, x, per_channel=per_channel)
    explainer = onnx_lrp.Explainer(quantized)
    ops = [n.op_type for n in explainer.model.graph.node]
    assert "QuantizeLinear" in ops  # activations keep their fake quantization in the forward pass
    inits = {t.name for t in explainer.model.graph.initializer}
    assert not [n for n in explainer.model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    e = explainer.explain(x, target=ref.target)
    # the explained output is the quantized model's own (its last node is a DequantizeLinear, no softmax)
    np.testing.assert_allclose(e.output, _as_written(quantized, x), rtol=0, atol=1e-5)
    assert e.relevance.dtype == np.float32
    assert _pearson(e.relevance, ref.relevance) > 0.99
    np.testing.assert_allclose(e.conservation(), ref.conservation(), atol=0.05)


def test_integer_only_operators_are_refused_naming_the_node(cifar):
    model, x, _ = cifar
    quantized = quantize_qdq(model, x, operators=True)
    with pytest.raises(UnsupportedOp, match=r"node '.*' \(op type 'QLinearConv'\).*QDQ"):
        onnx_lrp.Explainer(quantized).explain(x)


def test_dynamic_quantization_is_refused_naming_the_node(tmp_path):
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(ROOT / "models" / "digits_mlp.onnx", tmp_path / "dyn.onnx")
    explainer = onnx_lrp.Explainer(str(tmp_path / "dyn.onnx"))
    x = np.load(ROOT / "models" / "samples" / "digit.npy").astype(np.float32).reshape(-1, *explainer.input_shape[1:])
    with pytest.raises(UnsupportedOp, match=r"op type '(DynamicQuantizeLinear|MatMulInteger)'.*QDQ"):
        explainer.explain(x)


def test_float16_and_float64_inputs_are_accepted(cifar):
    model, x, ref = cifar
    explainer = onnx_lrp.Explainer(model)
    for dtype in (np.float16, np.float64):
        e = explainer.explain(x.astype(dtype), target=ref.target)
        assert e.relevance.dtype == np.float32
        assert _pearson(e.relevance, ref.relevance) > 0.999
