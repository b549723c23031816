"""Quantized models: the QDQ form is explained, integer-only op forms are refused clearly.

In the QDQ form (what ``onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QDQ)``
writes) every weight is ``DequantizeLinear`` of an integer constant, which canonization folds into
a float constant, and every activation passes a ``QuantizeLinear`` → ``DequantizeLinear`` pair
(fake quantization). The forward pass keeps the pair, so the explained output is the quantized
model's; relevance passes the pair unchanged (the straight-through estimator of quantization-aware
training), so the rules see the dequantized activations as ordinary float tensors.
"""
from __future__ import annotations

from ..errors import UnsupportedOp
from ..graph import INTEGER_CARRIERS
from .base import ROUTE, Handler
from .registry import handles

#: Ops that compute on integers (QOperator / dynamic quantization forms, standard and onnxruntime's
#: contrib ops): relevance cannot pass them.
INTEGER_ONLY = tuple(sorted(INTEGER_CARRIERS - {"QuantizeLinear"}))


@handles("QuantizeLinear", "DequantizeLinear")
class FakeQuantHandler(Handler):
    """One half of an activation's fake quantization: relevance passes it unchanged."""

    category = ROUTE
    data_input = 0
    data_dependent = "its scale or zero point depends on the explained data (dynamic quantization)"

    def vjp(self, b, node, g, grads, params):
        return [grads[0]]


class IntegerOnlyHandler(Handler):
    """An integer-only quantized op: refused with what to do instead."""

    def validate(self, node, g):
        raise UnsupportedOp(
            f"node {node.name!r} (op type {node.op_type!r}) computes on integers; onnx-lrp explains quantized "
            "models in the QDQ form (QuantizeLinear/DequantizeLinear around float ops): quantize the float model "
            "with onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QDQ), or explain the "
            "float model")


handles(*INTEGER_ONLY)(IntegerOnlyHandler)
handles(*INTEGER_ONLY, domain="com.microsoft")(IntegerOnlyHandler)
