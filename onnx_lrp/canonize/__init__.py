"""Graph passes that rewrite a model into the canonical form the rules are defined on.

Each pass takes and returns an ``onnx.ModelProto`` and keeps the explained output's values
(BN folding and bias fusion up to float rounding).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from .constants import fold_constants
from .contrib_ops import expand_contrib_ops
from .dense_bias import fuse_dense_bias
from .dequantize import dequantize_weights
from .einsum_dense import rewrite_einsum_dense
from .fold_batchnorm import fold_batchnorm
from .fold_scale import fold_linear_affine, fold_scale
from .fuse_bias import fuse_bias
from .identity import remove_identities
from .legacy_softmax import restore_softmax
from .prune import prune_to_output
from .strip_softmax import strip_softmax

__all__ = ["canonize", "Canonized", "fold_constants", "fold_batchnorm", "fuse_bias",
           "remove_identities", "prune_to_output", "strip_softmax", "fold_scale", "fold_linear_affine",
           "restore_softmax", "fuse_dense_bias", "dequantize_weights", "expand_contrib_ops",
           "rewrite_einsum_dense"]


@dataclass
class Canonized:
    model: onnx.ModelProto
    output: str
    notes: list[str] = field(default_factory=list)
    stripped: str | None = None


def canonize(model: onnx.ModelProto, output: str, strip_squashers: bool = True) -> Canonized:
    """Run all passes; ``output`` names the graph output to explain; ``strip_squashers``: remove a
    trailing Sigmoid/Softmax (see :mod:`.strip_softmax`)."""
    model = fold_constants(dequantize_weights(model))
    # prune first: with one graph output left, an Identity copying another output away is removable
    model = prune_to_output(model, output)
    model = expand_contrib_ops(model)  # onnxruntime's fused transformer ops, on the pruned graph
    model = remove_identities(model)
    model = restore_softmax(model)
    model, output, stripped = strip_softmax(model, output) if strip_squashers else (model, output, None)
    notes = []
    if stripped:
        notes.append(f"the trailing {stripped} was removed: relevance explains its input {output!r} "
                     "(the logits), not the probabilities")
        model = prune_to_output(model, output)
    model = rewrite_einsum_dense(model, _ranks(model))  # before the folds, which then see a MatMul
    model = fold_batchnorm(model)
    model = fold_linear_affine(model, _ranks(model))
    model = fuse_dense_bias(model, _ranks(model))
    return Canonized(model, output, notes, stripped)


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return {}
    ranks = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
        if vi.type.tensor_type.HasField("shape"):
            ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
    return ranks
