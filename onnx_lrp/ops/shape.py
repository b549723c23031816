"""Ops that only move data: relevance is routed by their VJP (Gradient rule)."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from .base import KEEPS_SIGN, ROUTE, Handler, attr, unbroadcast, unsupported
from .registry import handles


class DataHandler(Handler):
    """Single relevant data input at position 0; other inputs are constants (shapes, indices)."""

    category = ROUTE
    data_input = 0
    data_dependent = "only its first input may carry relevance"


@handles("Identity")
class IdentityHandler(DataHandler):
    """The Identity canonization keeps (an input copied to an output, which must keep both names)."""

    sign = KEEPS_SIGN
    linear = True

    def vjp(self, b, node, g, grads, params):
        return [grads[0]]


@handles("Reshape", "Flatten", "Squeeze", "Unsqueeze")
class ReshapeHandler(DataHandler):
    sign = KEEPS_SIGN
    linear = True

    def vjp(self, b, node, g, grads, params):
        return [b.op("Reshape", [grads[0], b.op("Shape", [node.input[0]])], hint="reshape_vjp")]


@handles("Transpose")
class TransposeHandler(DataHandler):
    sign = KEEPS_SIGN
    linear = True

    def vjp(self, b, node, g, grads, params):
        rank = len(g.shape(node.input[0]))
        perm = attr(node, "perm", list(range(rank))[::-1])
        return [b.op("Transpose", [grads[0]], perm=[int(i) for i in np.argsort(perm)])]


@handles("Cast")
class CastHandler(DataHandler):
    """Relevance keeps at least float32 precision: a Cast's backward pass casts it to the input's
    type only when that is float32 or wider, never down to the forward's float16 (a round trip
    through float16 would otherwise lose relevance to rounding)."""

    linear = True

    def vjp(self, b, node, g, grads, params):
        dtype = np.dtype(g.dtypes[node.input[0]])
        if not np.issubdtype(dtype, np.floating):
            raise unsupported(node, f"Cast from {dtype}")
        return [b.op("Cast", [grads[0]], to=TensorProto.DOUBLE if dtype.itemsize > 4 else TensorProto.FLOAT)]


@handles("Expand")
class ExpandHandler(DataHandler):
    sign = KEEPS_SIGN
    linear = True

    def vjp(self, b, node, g, grads, params):
        return [unbroadcast(b, grads[0], g.shape(node.output[0]), g.shape(node.input[0]))]


@handles("Concat")
class ConcatHandler(Handler):
    category = ROUTE
    sign = KEEPS_SIGN
    linear = True

    def check(self, node, g):
        if g.is_batch_axis(node.output[0], attr(node, "axis")):
            raise unsupported(node, "Concat along the batch axis mixes samples")

    def vjp(self, b, node, g, grads, params):
        rank = len(g.shape(node.output[0]))
        axis = attr(node, "axis") % rank
        sizes = [g.shape(t)[axis] for t in node.input]
        parts = b.op("Split", [grads[0], b.ints(sizes)], n_out=len(sizes), axis=axis)
        parts = parts if isinstance(parts, list) else [parts]
        return [parts[i] for i in self.relevant_inputs(node, g)]


@handles("Split")
class SplitHandler(DataHandler):
    sign = KEEPS_SIGN
    linear = True

    def check(self, node, g):
        super().check(node, g)
        if g.is_batch_axis(node.input[0], attr(node, "axis", 0)):
            raise unsupported(node, "Split along the batch axis mixes samples")

    def forward(self, b, node, g, inputs, params):
        """All the pieces are emitted (Split must produce as many outputs as it has sizes); the
        first is returned."""
        args = [inputs[0]] + list(node.input[1:])
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return b.op("Split", args, hint="split", n_out=len(node.output), **attrs)[0]

    def vjp(self, b, node, g, grads, params):
        axis = attr(node, "axis", 0) % len(g.shape(node.input[0]))
        grads = list(grads) + [None] * (len(node.output) - len(grads))
        pieces = [grad if grad is not None else b.zeros_like(out) for grad, out in zip(grads, node.output)]
        return [b.op("Concat", pieces, axis=axis, hint="split_vjp")]


@handles("Slice")
class SliceHandler(DataHandler):
    sign = KEEPS_SIGN
    linear = True

    def check(self, node, g):
        super().check(node, g)
        if any(t and g.const(t) is None for t in node.input[1:]):
            raise unsupported(node, "Slice bounds computed at run time")
        for start, end, axis, step in self._bounds(node, g):
            if g.is_batch_axis(node.input[0], axis) and not _keeps_whole_axis(start, end, step):
                raise unsupported(node, "slicing the batch axis")

    def _bounds(self, node, g) -> list[tuple[int, int, int, int]]:
        """(start, end, axis, step) per sliced axis, axis non-negative."""
        rank = len(g.shape(node.input[0]))
        consts = [g.const(t) if t else None for t in node.input[1:5]] + [None] * 4
        starts, ends, axes, steps = consts[:4]
        axes = axes if axes is not None else np.arange(len(starts))
        steps = steps if steps is not None else np.ones(len(starts), np.int64)
        return [(int(s), int(e), int(a) % rank, int(st)) for s, e, a, st in zip(starts, ends, axes, steps)]

    def _selection(self, node, g) -> dict[int, list[int]]:
        """axis -> kept indices along it, in output order."""
        shape = g.shape(node.input[0])
        return {axis: list(range(*slice(start, end, step).indices(shape[axis])))
                for start, end, axis, step in self._bounds(node, g)}

    def vjp(self, b, node, g, grads, params):
        grad = grads[0]
        shape = g.shape(node.input[0])
        for axis, kept in self._selection(node, g).items():
            if g.is_batch_axis(node.input[0], axis):
                continue
            grad = scatter_along_axis(b, grad, axis, kept, shape[axis], len(shape))
        return [grad]


#: Slice ends at or above this mean "to the end": exporters write INT32_MAX, INT64_MAX, or 10⁹
#: (tf2onnx's strided_slice); no batch is that large.
_TO_THE_END = 10 ** 9


def _keeps_whole_axis(start: int, end: int, step: int) -> bool:
    """Whether Slice keeps every index of an axis whatever its length."""
    return step == 1 and (start == 0 or start <= -(2 ** 31 - 1)) and end >= _TO_THE_END


@handles("Gather")
class GatherHandler(DataHandler):
    sign = KEEPS_SIGN
    linear = True

    def check(self, node, g):
        super().check(node, g)
        if g.const(node.input[1]) is None:
            raise unsupported(node, "Gather with indices computed at run time")
        if g.is_batch_axis(node.input[0], attr(node, "axis", 0)):
            raise unsupported(node, "Gather along the batch axis")

    def vjp(self, b, node, g, grads, params):
        shape = g.shape(node.input[0])
        axis = attr(node, "axis", 0) % len(shape)
        idx = g.const(node.input[1])
        flat_idx = [int(i) % shape[axis] for i in idx.reshape(-1)]
        merged = list(shape[:axis]) + [len(flat_idx)] + list(shape[axis + 1:])
        if axis != 0:
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
    return matmul_along_axis(b, grad, axis, onehot, rank)


def matmul_along_axis(b, grad, axis: int, mat: np.ndarray, rank: int) -> str:
    """Contract axis ``axis`` of ``grad`` (length mat.shape[0]) with ``mat``: the result has
    mat.shape[1] there, out[..., j, ...] = Σ_k grad[..., k, ...] · mat[k, j]."""
    perm = list(range(rank))
    perm[axis], perm[rank - 1] = perm[rank - 1], perm[axis]
    moved = grad if axis == rank - 1 else b.op("Transpose", [grad], perm=perm)
    out = b.op("MatMul", [moved, b.const(mat, "route")])
    return out if axis == rank - 1 else b.op("Transpose", [out], perm=perm)


@handles("Pad")
class PadHandler(DataHandler):
    """Constant padding: the padded values are constants, so their relevance is dropped (the
    VJP has no path to them). Reflect, edge and wrap padding copy input values, so the VJP routes
    the relevance of every copy back to the value it was copied from."""
    sign = KEEPS_SIGN
    linear = True

    _MODES = ("constant", "reflect", "edge", "wrap")

    def nonnegative_output(self, node, g, nonnegative):
        if attr(node, "mode", "constant") == "constant" and len(node.input) > 2 and node.input[2]:
            value = g.const(node.input[2])
            if value is None or float(np.min(value)) < 0:
                return False
        return super().nonnegative_output(node, g, nonnegative)

    def check(self, node, g):
        super().check(node, g)
        if any(t and g.const(t) is None for t in node.input[1:2] + node.input[3:4]):
            raise unsupported(node, "pads or axes computed at run time")
        if attr(node, "mode", "constant") not in self._MODES:
            raise unsupported(node, f"pad mode {attr(node, 'mode')!r}")
        pads = self._pads(node, g)
        rank = len(pads) // 2
        if any((pads[a] or pads[rank + a]) and g.is_batch_axis(node.input[0], a) for a in range(rank)):
            raise unsupported(node, "padding the batch axis")

    def _pads(self, node, g) -> list[int]:
        """[begin..., end...] over every axis (the optional axes input resolved)."""
        rank = len(g.shape(node.input[0]))
        given = [int(p) for p in g.const(node.input[1])]
        if len(node.input) > 3 and node.input[3]:
            axes = [int(a) % rank for a in g.const(node.input[3])]
        else:
            axes = list(range(rank))
        pads = [0] * (2 * rank)
        for i, axis in enumerate(axes):
            pads[axis], pads[rank + axis] = given[i], given[len(axes) + i]
        return pads

    def vjp(self, b, node, g, grads, params):
        pads = self._pads(node, g)
        if attr(node, "mode", "constant") == "constant":
            return [self._crop_and_restore(b, grads[0], pads)]
        shape = g.shape(node.input[0])
        rank = len(shape)
        grad = grads[0]
        for axis in range(rank):  # a batch axis is never padded (check), so every size here is static
            if pads[axis] or pads[rank + axis]:
                mat = _pad_routing(shape[axis], pads[axis], pads[rank + axis], attr(node, "mode"))
                grad = matmul_along_axis(b, grad, axis, mat, rank)
        return [grad]

    @staticmethod
    def _crop_and_restore(b, grad, pads):
        rank = len(pads) // 2
        axes = [a for a in range(rank) if pads[a] > 0 or pads[rank + a] > 0]
        if axes:
            starts = [max(pads[a], 0) for a in axes]
            # counted from the end, so no axis's size is baked in
            ends = [-pads[rank + a] if pads[rank + a] > 0 else _TO_THE_END for a in axes]
            grad = b.op("Slice", [grad, b.ints(starts), b.ints(ends), b.ints(axes)], hint="pad_vjp")
        back = [max(-p, 0) for p in pads]
        if any(back):
            grad = b.op("Pad", [grad, b.ints(back)])
        return grad


def _pad_routing(size: int, begin: int, end: int, mode: str) -> np.ndarray:
    """0/1 matrix (padded length × size): which input index each padded position copies.
    Negative pads crop first, then positive pads copy (as onnxruntime does)."""
    index = np.arange(size)[max(-begin, 0):size - max(-end, 0)]
    source = np.pad(index, (max(begin, 0), max(end, 0)), mode=mode)
    mat = np.zeros((len(source), size), np.float32)
    mat[np.arange(len(source)), source] = 1.0
    return mat


@handles("Tile")
class TileHandler(DataHandler):
    sign = KEEPS_SIGN
    linear = True

    def check(self, node, g):
        super().check(node, g)
        reps = g.const(node.input[1])
        if reps is None:
            raise unsupported(node, "repeats computed at run time")
        if any(int(r) != 1 and g.is_batch_axis(node.input[0], a) for a, r in enumerate(reps)):
            raise unsupported(node, "tiling the batch axis")

    def vjp(self, b, node, g, grads, params):
        """The gradient (r0·d0, r1·d1, ...) viewed as (r0, d0, r1, d1, ...), summed over the copies.
        The sizes d are read at run time: a batch axis (repeated once) may sit on any axis."""
        reps = [int(r) for r in g.const(node.input[1])]
        rank = len(reps)
        sizes = b.op("Unsqueeze", [b.op("Shape", [node.input[0]]), b.ints([1])])
        copies = b.ints(np.array(reps).reshape(rank, 1), "tile_reps")
        split = b.op("Reshape", [b.op("Concat", [copies, sizes], axis=1), b.ints([2 * rank])])
        tiled = b.op("Reshape", [grads[0], split])
        return [b.op("ReduceSum", [tiled, b.ints([2 * i for i in range(rank)])], keepdims=0, hint="tile_vjp")]
