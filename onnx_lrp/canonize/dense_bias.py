"""A dense layer applied along the last axis of a rank > 2 tensor, ``Add(MatMul(x, W), b)``, becomes
``Reshape(Gemm(Reshape(x, [-1, K]), W, b), shape(x)[:-1] + [M])``.

torch and tf2onnx write ``nn.Linear`` / ``Dense`` on (N, ..., K) tensors (ConvNeXt's pointwise
layers, transformer MLPs) as MatMul then Add. :func:`fuse_bias` merges the pair only for 2-D
inputs (a Gemm); left apart, the bias Add is an elementwise affine op with the Pass rule and the
dense rule never sees the bias, unlike Zennit's rules on ``nn.Linear``, where the bias is part of
z and absorbs its share of relevance. Rows of the reshaped input are positions of one sample, so
the rules act per position as they would on the MatMul; the Reshapes route relevance unchanged.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ._edit import copy_model, drop_unused_initializers
from .editor import GraphEditor


def fuse_dense_bias(model: onnx.ModelProto, ranks: dict[str, int]) -> onnx.ModelProto:
    """``ranks``: tensor name -> rank (shape inference); a MatMul of unknown input rank is kept."""
    model = copy_model(model)
    edit = GraphEditor(model)
    # every match is found on the unchanged graph, then rewritten
    replaced = [(add, found) for add in edit.nodes() if (found := _match(edit, add, ranks)) is not None]
    if not replaced:
        return model
    for add, (matmul, bias, k) in replaced:
        edit.remove(matmul)
        edit.remove(add)
        edit.insert_before(add, _dense(edit, add, matmul, bias, k))
    model = edit.commit()
    drop_unused_initializers(model)  # the replaced biases
    return model


def _match(edit, add, ranks):
    if add.op_type != "Add" or len(add.input) != 2:
        return None
    for idx in (0, 1):
        matmul = edit.producer(add.input[idx])
        if matmul is None or matmul.op_type != "MatMul":
            continue
        bias = edit.const(add.input[1 - idx])
        if bias is None:
            continue
        weight = edit.const(matmul.input[1])
        if weight is None or weight.ndim != 2 or edit.const(matmul.input[0]) is not None:
            continue
        rank = ranks.get(matmul.input[0])
        if rank is None or rank <= 2:
            continue  # 2-D: fuse_bias makes it a Gemm directly
        if len(edit.consumers(matmul.output[0])) != 1 or edit.is_output(matmul.output[0]):
            continue
        m = weight.shape[1]
        if bias.size not in (1, m) or any(d != 1 for d in bias.shape[:-1]) or bias.ndim > rank:
            continue
        return matmul, np.broadcast_to(bias.reshape(-1), (m,)).astype(np.float32), weight.shape[0]
    return None


def _dense(edit, add, matmul, bias, k) -> list[onnx.NodeProto]:
    x, weight, out = matmul.input[0], matmul.input[1], add.output[0]
    base = matmul.name or out

    def fresh(suffix):
        return edit.fresh(f"{base}/{suffix}")

    flat_shape, b_name, last = fresh("rows_shape"), fresh("bias"), fresh("features")
    edit.set_const(flat_shape, np.asarray([-1, k], np.int64))
    edit.set_const(b_name, bias)
    edit.set_const(last, np.asarray([bias.shape[0]], np.int64))
    lead, rows, dense, out_shape = (fresh(s) for s in ("leading", "rows", "dense", "out_shape"))
    return [
        helper.make_node("Shape", [x], [lead], name=fresh("LeadingShape"), start=0, end=-1),
        helper.make_node("Reshape", [x, flat_shape], [rows], name=fresh("Rows")),
        helper.make_node("Gemm", [rows, weight, b_name], [dense], name=matmul.name or fresh("Gemm")),
        helper.make_node("Concat", [lead, last], [out_shape], name=fresh("OutShape"), axis=0),
        helper.make_node("Reshape", [dense, out_shape], [out], name=add.name or fresh("Unrows")),
    ]
