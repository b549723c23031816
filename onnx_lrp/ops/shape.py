"""Ops that only move data: relevance is routed by their VJP (Gradient rule)."""
from __future__ import annotations

import numpy as np

from .base import ROUTE, Handler, attr, unbroadcast, unsupported
from .registry import register


class DataHandler(Handler):
    """Single relevant data input at position 0; other inputs are constants (shapes, indices)."""

    category = ROUTE

    def relevant_inputs(self, node, g):
        return [0]

    def check(self, node, g):
        if g.relevant_inputs(node) != [0]:
            raise unsupported(node, "only its first input may carry relevance")


class ReshapeHandler(DataHandler):
    def vjp(self, b, node, g, grads, params):
        return [b.op("Reshape", [grads[0], b.op("Shape", [node.input[0]])], hint="reshape_vjp")]


class TransposeHandler(DataHandler):
    def vjp(self, b, node, g, grads, params):
        rank = len(g.shape(node.input[0]))
        perm = attr(node, "perm", list(range(rank))[::-1])
        return [b.op("Transpose", [grads[0]], perm=[int(i) for i in np.argsort(perm)])]


class CastHandler(DataHandler):
    def vjp(self, b, node, g, grads, params):
        dtype = g.dtypes[node.input[0]]
        to = {np.dtype(np.float32): 1, np.dtype(np.float16): 10, np.dtype(np.float64): 11}.get(dtype)
        if to is None:
            raise unsupported(node, f"Cast from {dtype}")
        return [b.op("Cast", [grads[0]], to=to)]


class ExpandHandler(DataHandler):
    def vjp(self, b, node, g, grads, params):
        return [unbroadcast(b, grads[0], g.shape(node.output[0]), g.shape(node.input[0]))]


class ConcatHandler(Handler):
    category = ROUTE

    def vjp(self, b, node, g, grads, params):
        rank = len(g.shape(node.output[0]))
        axis = attr(node, "axis") % rank
        if axis == 0:
            raise unsupported(node, "Concat along the batch axis mixes samples")
        sizes = [g.shape(t)[axis] for t in node.input]
        parts = b.op("Split", [grads[0], b.ints(sizes)], n_out=len(sizes), axis=axis)
        parts = parts if isinstance(parts, list) else [parts]
        return [parts[i] for i in self.relevant_inputs(node, g)]


class SplitHandler(DataHandler):
    def vjp(self, b, node, g, grads, params):
        rank = len(g.shape(node.input[0]))
        axis = attr(node, "axis", 0) % rank
        if axis == 0:
            raise unsupported(node, "Split along the batch axis mixes samples")
        pieces = [grad if grad is not None else b.zeros_like(out) for grad, out in zip(grads, node.output)]
        return [b.op("Concat", pieces, axis=axis, hint="split_vjp")]


class SliceHandler(DataHandler):
    def check(self, node, g):
        super().check(node, g)
        if any(t and g.const(t) is None for t in node.input[1:]):
            raise unsupported(node, "Slice bounds computed at run time")
        if 0 in self._selection(node, g):
            if len(self._selection(node, g)[0]) != g.shape(node.input[0])[0]:
                raise unsupported(node, "slicing the batch axis")

    def _selection(self, node, g) -> dict[int, list[int]]:
        """axis -> kept indices along it, in output order."""
        shape = g.shape(node.input[0])
        consts = [g.const(t) if t else None for t in node.input[1:5]] + [None] * 4
        starts, ends, axes, steps = consts[:4]
        axes = axes if axes is not None else np.arange(len(starts))
        steps = steps if steps is not None else np.ones(len(starts), np.int64)
        selection = {}
        for start, end, axis, step in zip(starts, ends, axes, steps):
            axis = int(axis) % len(shape)
            selection[axis] = list(range(*slice(int(start), int(end), int(step)).indices(shape[axis])))
        return selection

    def vjp(self, b, node, g, grads, params):
        grad = grads[0]
        shape = g.shape(node.input[0])
        for axis, kept in self._selection(node, g).items():
            if axis == 0:
                continue
            grad = scatter_along_axis(b, grad, axis, kept, shape[axis], len(shape))
        return [grad]


class GatherHandler(DataHandler):
    def check(self, node, g):
        super().check(node, g)
        if g.const(node.input[1]) is None:
            raise unsupported(node, "Gather with indices computed at run time")
        if attr(node, "axis", 0) % len(g.shape(node.input[0])) == 0:
            raise unsupported(node, "Gather along the batch axis")

    def vjp(self, b, node, g, grads, params):
        shape = g.shape(node.input[0])
        axis = attr(node, "axis", 0) % len(shape)
        idx = g.const(node.input[1])
        flat_idx = [int(i) % shape[axis] for i in idx.reshape(-1)]
        merged = list(shape[:axis]) + [len(flat_idx)] + list(shape[axis + 1:])
        merged[0] = 0  # keep the batch dim as it is
        grad = b.op("Reshape", [grads[0], b.ints(merged)])
        return [scatter_along_axis(b, grad, axis, flat_idx, shape[axis], len(shape))]


def scatter_along_axis(b, grad, axis: int, indices: list[int], size: int, rank: int) -> str:
    """Sum ``grad`` (len(indices) along ``axis``) into a tensor with ``size`` along it:
    out[..., indices[k], ...] += grad[..., k, ...]. Contiguous ranges use Pad."""
    if indices and indices == list(range(indices[0], indices[0] + len(indices))):
        pads = [0] * (2 * rank)
        pads[axis], pads[rank + axis] = indices[0], size - indices[-1] - 1
        return b.op("Pad", [grad, b.ints(pads)], hint="slice_vjp") if any(pads) else grad
    onehot = np.zeros((len(indices), size), np.float32)
    for k, i in enumerate(indices):
        onehot[k, i] += 1.0
    perm = list(range(rank))
    perm[axis], perm[rank - 1] = perm[rank - 1], perm[axis]
    moved = grad if axis == rank - 1 else b.op("Transpose", [grad], perm=perm)
    out = b.op("MatMul", [moved, b.const(onehot, "onehot")])
    return out if axis == rank - 1 else b.op("Transpose", [out], perm=perm)


class PadHandler(DataHandler):
    def check(self, node, g):
        super().check(node, g)
        if g.const(node.input[1]) is None:
            raise unsupported(node, "pads computed at run time")
        if len(node.input) > 3 and node.input[3]:
            raise unsupported(node, "Pad with an axes input")
        pads = g.const(node.input[1])
        rank = len(pads) // 2
        if pads[0] or pads[rank]:
            raise unsupported(node, "padding the batch axis")

    def vjp(self, b, node, g, grads, params):
        """Relevance of padded values is dropped, whatever the pad mode."""
        pads = [int(p) for p in g.const(node.input[1])]
        rank = len(pads) // 2
        out_shape = g.shape(node.output[0])
        axes = [a for a in range(1, rank) if pads[a] > 0 or pads[rank + a] > 0]
        grad = grads[0]
        if axes:
            starts = [max(pads[a], 0) for a in axes]
            ends = [out_shape[a] - max(pads[rank + a], 0) for a in axes]
            grad = b.op("Slice", [grad, b.ints(starts), b.ints(ends), b.ints(axes)], hint="pad_vjp")
        back = [max(-p, 0) for p in pads]
        if any(back):
            grad = b.op("Pad", [grad, b.ints(back)])
        return [grad]


class TileHandler(DataHandler):
    def check(self, node, g):
        super().check(node, g)
        reps = g.const(node.input[1])
        if reps is None:
            raise unsupported(node, "repeats computed at run time")
        if int(reps[0]) != 1:
            raise unsupported(node, "tiling the batch axis")

    def vjp(self, b, node, g, grads, params):
        reps = [int(r) for r in g.const(node.input[1])]
        shape = g.shape(node.input[0])
        split = [0]
        for r, d in zip(reps[1:], shape[1:]):
            split += [r, d]
        tiled = b.op("Reshape", [grads[0], b.ints(split)])
        axes = [1 + 2 * i for i in range(len(reps) - 1)]
        return [b.op("ReduceSum", [tiled, b.ints(axes)], keepdims=0, hint="tile_vjp")]


register(ReshapeHandler(), "Reshape", "Flatten", "Squeeze", "Unsqueeze")
register(TransposeHandler(), "Transpose")
register(CastHandler(), "Cast")
register(ExpandHandler(), "Expand")
register(ConcatHandler(), "Concat")
register(SplitHandler(), "Split")
register(SliceHandler(), "Slice")
register(GatherHandler(), "Gather")
register(PadHandler(), "Pad")
register(TileHandler(), "Tile")
