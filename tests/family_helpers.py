"""Shared by the family and exporter tests: bias-free canonized models, the LRP-0 composite,
ZBox bounds, and the comparison with Zennit (no torch)."""
from __future__ import annotations

import numpy as np
import onnx

import onnx_lrp
from onnx_lrp.canonize import canonize
from onnx_lrp.graph import load_detached
from onnx_lrp.ops import base as cat
from onnx_lrp.rules import Norm
from onnx_lrp.weights import make_initializer, tensor_value

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
#: Conservation: |sum of input relevance / target output - 1| allowed (issue 4).
CONSERVATION_RTOL = 1e-3
#: Agreement with Zennit, as tests/test_zennit_agreement.py.
MIN_PEARSON, MAX_RELATIVE_ERROR = 0.9999, 1e-3


def without_biases(model):
    """(canonized model with every Conv/ConvTranspose/Gemm bias zeroed, its weight store).

    Canonization first: BatchNorm folding and bias fusion turn BN shifts and bias Adds into the
    biases zeroed here. Keep the store alive while the model is used."""
    proto, _, store = load_detached(model)
    canonized = canonize(proto, _first_float_output(proto)).model
    index = {t.name: i for i, t in enumerate(canonized.graph.initializer)}
    zeroed = 0
    for node in canonized.graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm") and len(node.input) > 2 and node.input[2] in index:
            tensor = canonized.graph.initializer[index[node.input[2]]]
            tensor.CopyFrom(make_initializer(tensor.name, np.zeros_like(tensor_value(tensor)), store))
            zeroed += 1
    assert zeroed, "no bias found to zero: the test would not test what it says"
    return canonized, store


def lrp0_composite():
    """Epsilon with ε = 0 on every linear op, Norm without stabiliser on sums and average pools
    (zero denominators pass no relevance, see GraphBuilder.ratio)."""
    return onnx_lrp.composites.EpsilonComposite(
        epsilon=0.0, category_map={cat.SUM: Norm(0.0), cat.AVGPOOL: Norm(0.0)})


def conservation_error(model, x, target=None) -> np.ndarray:
    canonized, store = without_biases(model)
    result = onnx_lrp.Explainer(canonized, composite=lrp0_composite()).explain(x, target=target)
    assert np.isfinite(result.relevance).all()
    assert np.all(np.abs(result.target_output) > 1e-3), "a near-zero target output makes the ratio meaningless"
    del store
    return np.abs(result.conservation() - 1.0)


def gamma_box_for(x):
    """ZBox bounds: pixel values 0 and 1 through the ImageNet normalisation for images, the data
    range (padded) otherwise."""
    if x.ndim == 4 and x.shape[1] == 3:
        return onnx_lrp.composites.EpsilonGammaBox(low=(0 - IMAGENET_MEAN) / IMAGENET_STD,
                                                   high=(1 - IMAGENET_MEAN) / IMAGENET_STD)
    bound = float(np.abs(x).max()) + 1.0
    return onnx_lrp.composites.EpsilonGammaBox(low=-bound, high=bound)


def pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel())[0, 1])


def assert_agrees_with_zennit(ours, reference, what):
    for sample, (a, b) in enumerate(zip(ours, reference)):
        correlation = pearson(a, b)
        error = np.abs(a.astype(np.float64) - b).max() / np.abs(b).max()
        assert correlation >= MIN_PEARSON, f"{what}, sample {sample}: Pearson {correlation:.6f} < {MIN_PEARSON}"
        assert error <= MAX_RELATIVE_ERROR, \
            f"{what}, sample {sample}: max|R - R_zennit| / max|R_zennit| = {error:.2e} > {MAX_RELATIVE_ERROR}"


def op_types(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _first_float_output(proto) -> str:
    """The output the Explainer explains by default (e.g. skl2onnx's probabilities, not its label)."""
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)
    return next(o.name for o in proto.graph.output if o.type.tensor_type.elem_type in floats)
