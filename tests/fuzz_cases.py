"""Random valid models, mutated model bytes and the checks both must pass (used by
``tests/test_fuzz.py`` with a fixed seed and few examples, and by ``tools/fuzz.py`` for deep runs).

A model is drawn through a :class:`Chooser` (hypothesis' ``data.draw`` or a seeded numpy
generator), so the same builder serves shrinking property tests and long seeded campaigns. Kinds:

* image (N, C, H, W): Conv (asymmetric kernels, strides and pads, groups, dilation), BatchNorm
  (folded), activations, MaxPool/AveragePool (``ceil_mode``, dilation, ``count_include_pad``),
  Resize (nearest/linear/cubic, every coordinate mode, scales or sizes), residual sums and
  differences, Concat/Split/Slice/Pad/Transpose on channel and spatial axes, gates
  ``x·σ(conv(x))``, Where with a constant mask, Softmax over channels, ReduceMean/ReduceSum
  keeping an axis, Reshape and Unsqueeze/Squeeze round trips, constant scales, Identity/Dropout,
  float16 Cast round trips;
* sequence (N, T, F) and tokens (int64 ids → Gather from an embedding table, negative ids too):
  position-wise dense layers (MatMul or Einsum), attention (MatMul or Einsum of two activations, one or two heads,
  scaled by Mul or Div, masked by an added constant (−inf, −1e9, float32's lowest) or by Where),
  LayerNormalization and its decomposition, GLU gates, GELU (the op at opset 20, the Erf and tanh
  forms below), Slice/Split/Pad/Transpose/Concat/Resize along tokens or features;
* recurrent (N, T, F): LSTM (peepholes or not), GRU (``linear_before_reset`` or not), RNN (tanh
  or ReLU), forward/reverse/bidirectional, ``layout`` 0 (after a Transpose) or 1, Y or Y_h read;
* vector (N, F): dense layers only.

Every kind ends in dense layers (Gemm with alpha/beta/transB or MatMul + Add, Reshape/Transpose
detours) and the logits. Models are opset 17 or 20 (ReduceMean's axes an attribute or an input).
With ``conserving=True`` every bias, BatchNorm mean and shift, LayerNorm β and recurrent bias is
zero and activations have f(0) = 0, so LRP-0 must conserve — unless the model holds an op whose
rule does not (:attr:`Drawn.conserves` says under which composites it must).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from onnx_lrp.composites import CPLRP, EpsilonComposite
from onnx_lrp.rules import Norm

#: LRP-0 (Epsilon with ε = 0; Norm, i.e. ε = 0 too, for sums and average pools and the recurrent
#: cell update).
LRP0 = EpsilonComposite(epsilon=0.0, type_map={"Add": Norm(0.0), "AveragePool": Norm(0.0),
                                               "GlobalAveragePool": Norm(0.0)}, cell_epsilon=0.0)
#: Activations with f(0) = 0. Sigmoid and Softplus (f(0) > 0) act like a bias where their input
#: is exactly 0 (a dead unit upstream): LRP-0 then loses that relevance by design, so they are
#: drawn only into models that are not checked for conservation.
ACTIVATIONS = ["Relu", "LeakyRelu", "Tanh", "Elu", "Clip", "Gelu", "PRelu", "Selu", "Celu", "Softsign", "HardSwish",
               "Mish", "Abs"]
BIASED_ACTIVATIONS = ["Sigmoid", "Softplus"]
#: The composites every model is explained with by default (``tools/fuzz.py`` adds more).
COMPOSITES = ("lrp0", "epsilon_plus_flat")
KINDS = ("image", "sequence", "tokens", "recurrent", "vector")


class Chooser:
    """Draws for the builder; subclasses bind it to hypothesis or numpy."""

    def integer(self, low: int, high: int) -> int:  # inclusive
        raise NotImplementedError

    def choice(self, options):
        return options[self.integer(0, len(options) - 1)]

    def boolean(self) -> bool:
        return bool(self.integer(0, 1))


class NumpyChooser(Chooser):
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def integer(self, low, high):
        return int(self.rng.integers(low, high + 1))


class HypothesisChooser(Chooser):
    def __init__(self, data):
        self.data = data

    def integer(self, low, high):
        from hypothesis import strategies as st
        return self.data.draw(st.integers(low, high))


@dataclass
class Drawn:
    model: onnx.ModelProto
    x: np.ndarray
    ops: list[str] = field(default_factory=list)
    conserving: bool = True
    #: the composites under which the relevance must sum to the explained logit
    conserves: tuple = ()
    kind: str = ""
    #: the same function in a form onnxruntime runs (its CPU kernels refuse ``layout=1`` recurrent
    #: layers), or None when it runs ``model`` itself
    reference_model: onnx.ModelProto | None = None

    def reference(self) -> np.ndarray:
        from model_builders import run
        return next(iter(run(self.reference_model or self.model, {"x": self.x}).values()))

    @property
    def integer_input(self) -> bool:
        return np.issubdtype(self.x.dtype, np.integer)


class _Net:
    def __init__(self, seed: int, conserving: bool, opset: int):
        self.rng = np.random.default_rng(seed)
        self.conserving = conserving
        self.opset = opset
        self.nodes, self.inits, self.ops = [], [], []
        self.input_type, self.input_shape = TensorProto.FLOAT, ()
        #: why LRP-0 / CP-LRP do not conserve on this model (empty: they must)
        self.lossy = {"lrp0": set(), "cp_lrp": set()}
        #: zeros padded or filled in: a normalisation after them makes them non-zero constants (biases)
        self.zero_padded = False

    def name(self, hint: str) -> str:
        return f"{hint}_{len(self.nodes) + len(self.inits)}"

    def const(self, array, hint="w") -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values, hint="ints") -> str:
        return self.const(np.array(values, np.int64), hint)

    def weight(self, shape, fan_in) -> str:
        return self.const((self.rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))).astype(np.float32))

    def bias(self, n) -> str:
        values = np.zeros(n) if self.conserving else self.rng.standard_normal(n) * 0.1
        return self.const(values.astype(np.float32), "b")

    def op(self, op_type, inputs, n_out=1, **attrs):
        first = self.name(op_type.lower())
        outs = [first] + [f"{first}_{i}" for i in range(1, n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0], **attrs))
        self.ops.append(op_type)
        return outs[0] if n_out == 1 else outs

    def reduce(self, op_type, t, axes, keepdims):
        """ReduceMean/ReduceSum in this opset's form (axes an input from 18; ReduceSum's from 13)."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [t, self.ints(axes, "axes")], keepdims=keepdims)
        return self.op(op_type, [t], axes=list(axes), keepdims=keepdims)

    def model(self, outputs, shape=None) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "fuzz", [helper.make_tensor_value_info(
            "x", self.input_type, ["N", *self.input_shape])],
            [helper.make_tensor_value_info(t, TensorProto.FLOAT, shape) for t in outputs], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8 if self.opset <= 17 else 9
        return model

    def shape(self, t: str) -> tuple:
        """The shape onnxruntime gives ``t`` (one sample): ceil_mode pools and resizes are what
        onnxruntime makes of them, which is exactly what the fuzzer must not predict itself."""
        from model_builders import run
        dtype = np.int64 if self.input_type == TensorProto.INT64 else np.float32
        model = self.model([t])
        out = run(layout0_twin(model) or model, {"x": np.zeros((1, *self.input_shape), dtype)})
        return tuple(next(iter(out.values())).shape[1:])


def random_model(c: Chooser, conserving: bool = True, kind: str | None = None) -> Drawn:
    """A random valid model and an input for it (``kind`` one of :data:`KINDS`, else drawn)."""
    net = _Net(c.integer(0, 2**31 - 1), conserving, c.choice([17, 17, 20]))
    kind = kind or c.choice(["image", "image", "image", "sequence", "sequence", "tokens", "recurrent", "vector"])
    if kind == "image":
        net.input_shape = (c.integer(1, 4), c.integer(1, 12), c.integer(1, 12))
        t, features = _image_body(c, net, "x", *net.input_shape)
    elif kind in ("sequence", "tokens"):
        length, features = c.integer(1, 6), c.integer(1, 8)
        if kind == "tokens":
            t = _embedding(c, net, length, features)
        else:
            net.input_shape, t = (length, features), "x"
        t, features = _sequence_body(c, net, t, length, features)
    elif kind == "recurrent":
        net.input_shape = (c.integer(1, 5), c.integer(1, 4))
        t, features = _recurrent(c, net, "x", *net.input_shape)
    else:
        net.input_shape, t, features = (c.integer(1, 12),), "x", None
        features = net.input_shape[0]
    t = _dense_body(c, net, t, features)
    model = net.model([t], ["N", None])
    batch = c.integer(1, 3)
    if kind == "tokens":
        vocab = net.vocab
        x = net.rng.integers(-vocab, vocab, (batch, *net.input_shape)).astype(np.int64)
    else:
        x = net.rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
    conserves = tuple(name for name, why in net.lossy.items() if conserving and not why)
    return Drawn(model, x, net.ops, conserving, conserves, kind, layout0_twin(model))


def layout0_twin(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """``model`` with each ``layout=1`` LSTM/GRU/RNN as a ``layout=0`` one between Transposes (the
    same function, which onnxruntime's CPU kernels run), or None when there is none."""
    if not any(n.op_type in ("LSTM", "GRU", "RNN") and any(a.name == "layout" and a.i == 1 for a in n.attribute)
               for n in model.graph.node):
        return None
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    nodes = []
    for n in twin.graph.node:
        if n.op_type not in ("LSTM", "GRU", "RNN") or not any(a.name == "layout" and a.i == 1 for a in n.attribute):
            nodes.append(n)
            continue
        rolled = onnx.NodeProto()
        rolled.CopyFrom(n)
        for a in rolled.attribute:
            if a.name == "layout":
                a.i = 0
        nodes.append(helper.make_node("Transpose", [n.input[0]], [n.input[0] + "/tm"], perm=[1, 0, 2]))
        rolled.input[0] = n.input[0] + "/tm"
        perms = [[2, 0, 1, 3], [1, 0, 2], [1, 0, 2]]  # Y (T, D, N, H) -> (N, T, D, H); Y_h, Y_c (D, N, H) -> (N, D, H)
        for i, out in enumerate(n.output):
            if out:
                rolled.output[i] = out + "/tm"
        nodes.append(rolled)
        nodes += [helper.make_node("Transpose", [out + "/tm"], [out], perm=perms[i]) for i, out in enumerate(n.output) if out]
    del twin.graph.node[:]
    twin.graph.node.extend(nodes)
    return twin


def _image_body(c, net, t, ch, h, w):
    for _ in range(c.integer(1, 4)):
        kind = c.choice(["conv", "conv", "pool", "residual", "concat", "gate", "transpose", "cast", "act",
                         "pad", "slice", "split", "reshape", "scale", "sub", "identity", "squeeze", "resize",
                         "where", "softmax", "reduce", "spatial_concat", "conv_transpose", "instance_norm", "sum",
                         "clamp", "tile", "expand"])
        if kind == "conv":
            t, ch = _conv(c, net, t, ch, h, w)
        elif kind == "pool":
            op = c.choice(["MaxPool", "AveragePool"])
            attrs = _window(c, (h, w), dilate=op == "MaxPool")
            attrs["ceil_mode"] = c.integer(0, 1)
            if op == "AveragePool":
                attrs["count_include_pad"] = c.integer(0, 1)
            t = net.op(op, [t], **attrs)
        elif kind == "residual":
            branch = net.op("Relu", [_same_conv(c, net, t, ch, ch)])
            t = net.op("Add", [t, branch])
        elif kind == "concat":
            extra = c.integer(1, 3)
            t, ch = net.op("Concat", [t, _same_conv(c, net, t, ch, extra)], axis=1), ch + extra
        elif kind == "spatial_concat":  # along H or W: the map and a transformed copy of it
            t = net.op("Concat", [t, _same_conv(c, net, t, ch, ch)], axis=c.choice([2, 3, -1]))
        elif kind == "gate":
            gate = net.op(c.choice(["Sigmoid", "HardSigmoid"]), [_same_conv(c, net, t, ch, ch)])
            t = net.op("Mul", [t, gate] if c.boolean() else [gate, t])
        elif kind == "transpose":
            t = net.op("Transpose", [t], perm=c.choice([[0, 1, 3, 2], [0, 2, 1, 3], [0, 3, 2, 1]]))
        elif kind == "cast":
            t = net.op("Cast", [net.op("Cast", [t], to=TensorProto.FLOAT16)], to=TensorProto.FLOAT)
        elif kind == "pad":
            pads = [0, 0, 0, 0, 0, 0, 0, 0]
            for axis in c.choice([[2], [3], [2, 3], [1]]):
                pads[axis], pads[axis + 4] = c.integer(0, 2), c.integer(0, 2)
            mode = c.choice(["constant", "constant", "reflect", "edge"])
            if mode == "reflect" and any(pads[a] >= s or pads[a + 4] >= s for a, s in ((1, ch), (2, h), (3, w))):
                mode = "edge"
            t = net.op("Pad", [t, net.ints(pads, "pads")], mode=mode)
            net.zero_padded = net.zero_padded or mode == "constant"
        elif kind == "slice":
            axis, size = c.choice([(1, ch), (2, h), (3, w)])
            if size >= 2:
                start, step = c.integer(0, size - 2), c.choice([1, 1, 2, -1])
                bounds = [start, size] if step > 0 else [size - 1, start - size - 1]
                t = net.op("Slice", [t, net.ints(bounds[:1], "starts"), net.ints(bounds[1:], "ends"),
                                     net.ints([axis], "axes"), net.ints([step], "steps")])
        elif kind == "split":  # swap two groups along an axis
            axis, size = c.choice([(1, ch), (2, h), (3, w)])
            if size >= 2:
                first = c.integer(1, size - 1)
                a, b2 = net.op("Split", [t, net.ints([first, size - first], "split")], n_out=2, axis=axis)
                t = net.op("Concat", [b2, a], axis=axis)
        elif kind == "reshape":  # (N, C, H, W) -> (N, C, H*W) -> back
            flat = net.op("Reshape", [t, net.ints([0, ch, h * w], "shape")])
            t = net.op("Reshape", [flat, net.ints([0, ch, h, w], "shape")])
        elif kind == "scale":  # a per-channel constant factor or divisor (folded or routed)
            factor = net.rng.uniform(0.5, 2.0, (1, ch, 1, 1)).astype(np.float32)
            t = net.op(c.choice(["Mul", "Div"]), [t, net.const(factor, "scale")])
        elif kind == "sub":  # a residual difference
            t = net.op("Sub", [t, net.op("Relu", [_same_conv(c, net, t, ch, ch)])])
        elif kind == "identity":
            t = net.op(c.choice(["Identity", "Dropout"]), [t])
        elif kind == "squeeze":  # (N, C, H, W) -> (N, 1, C, H, W) -> back
            axes = net.ints([1], "axes")
            t = net.op("Squeeze", [net.op("Unsqueeze", [t, axes]), axes])
        elif kind == "resize":
            t = _resize(c, net, t, (ch, h, w))
        elif kind == "where":
            t = _where(c, net, t, (ch, h, w))
        elif kind == "softmax":  # over channels or a spatial axis (not attention: its rule does not conserve)
            t = net.op("Softmax", [t], axis=c.choice([1, 2, -1]))
            net.lossy["lrp0"].add("Softmax")
            net.lossy["cp_lrp"].add("Softmax")
        elif kind == "reduce":  # mean or sum over one spatial axis, kept
            t = net.reduce(c.choice(["ReduceMean", "ReduceSum"]), t, [c.choice([2, 3])], keepdims=1)
        elif kind == "conv_transpose":
            t = _conv_transpose(c, net, t, ch)
        elif kind == "instance_norm":
            scale = net.const(net.rng.uniform(0.5, 1.5, ch).astype(np.float32), "scale")
            t = net.op("InstanceNormalization", [t, scale, net.bias(ch)], epsilon=1e-5)
            if net.zero_padded:
                net.lossy["lrp0"].add("normalisation after zero padding")
                net.lossy["cp_lrp"].add("normalisation after zero padding")
        elif kind == "sum":  # Sum / Mean of the map and branches of it (a residual sum of three)
            branches = [net.op("Relu", [_same_conv(c, net, t, ch, ch)]) for _ in range(c.integer(1, 2))]
            t = net.op(c.choice(["Sum", "Mean"]), [t, *branches])
        elif kind == "clamp":  # Max/Min with a constant: a clamp written without Clip
            bound = net.const(np.float32(0.0 if net.conserving else c.choice([-0.5, 0.5])), "bound")
            t = net.op(c.choice(["Max", "Min"]), [t, bound] if c.boolean() else [bound, t])
        elif kind == "tile" and h * w <= 36:
            t = net.op("Tile", [t, net.ints([1, 1, c.integer(1, 2), c.integer(1, 2)], "repeats")])
        elif kind == "expand":  # a statistic over H broadcast back over H (ReduceMean keepdims, Expand)
            mean = net.reduce("ReduceMean", t, [2], keepdims=1)
            t = net.op("Expand", [mean, net.ints([1, ch, h, w], "shape")])
        else:
            t = _activation(c, net, t)
        ch, h, w = net.shape(t)
    head = c.integer(0, 3)
    if head == 0:
        return net.op("Flatten", [net.op(c.choice(["GlobalAveragePool", "GlobalMaxPool"]), [t])]), ch
    if head == 1:
        return net.reduce(c.choice(["ReduceSum", "ReduceMean"]), t, [2, 3], keepdims=0), ch
    return net.op("Flatten", [t]), ch * h * w


def _resize(c, net, t, sample):
    """Resize along the trailing axes by scales or to sizes, with the node's own rounding."""
    rank = len(sample) + 1
    mode = c.choice(["nearest", "linear", "cubic"] if rank == 4 else ["nearest", "linear"])  # onnxruntime's cubic: 2-D or 4-D
    attrs = {"mode": mode, "coordinate_transformation_mode": c.choice(
        ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"])}
    if mode == "nearest":
        attrs["nearest_mode"] = c.choice(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
    if mode == "cubic" and c.boolean():
        attrs["cubic_coeff_a"] = -0.5
    resized = [a for a in range(2, rank) if c.boolean()] or [rank - 1]
    if c.boolean():
        scales = [1.0] * rank
        for a in resized:
            scales[a] = c.choice([0.5, 1.5, 2.0, 3.0]) if sample[a - 1] <= 6 else c.choice([0.5, 1.5])
        return net.op("Resize", [t, "", net.const(np.array(scales, np.float32), "scales")], **attrs)
    sizes = [1, *sample]
    for a in resized:
        sizes[a] = c.integer(1, 2 * sample[a - 1] + 1)
    sizes[0] = 1
    # sizes must name the batch too; a model that resizes to a fixed batch is not one we want,
    # so the sizes tensor is computed from the input's shape: Concat(Shape(t)[:1], sizes[1:])
    batch = net.op("Shape", [t], start=0, end=1)
    full = net.op("Concat", [batch, net.ints(sizes[1:], "sizes")], axis=0)
    return net.op("Resize", [t, "", "", full], **attrs)


def _where(c, net, t, sample):
    """``Where(mask, t, other)`` with a constant mask: other 0 (a masked fill), a constant (a
    bias: only into models not checked for conservation) or another branch of the data."""
    mask = net.const(net.rng.random(sample) < 0.7, "mask")
    other = c.choice(["zero", "constant", "branch"])
    if other == "branch":
        fill = net.op("Neg", [t])
    else:
        value = 0.0 if other == "zero" or net.conserving else c.choice([-1e9, 1.5])
        fill = net.const(np.float32(value), "fill")
        net.zero_padded = True
    return net.op("Where", [mask, t, fill] if c.boolean() else [net.op("Not", [mask]), fill, t])


def _embedding(c, net, length, features):
    """Token ids (N, T) -> Gather from a (vocab, F) table [+ position embeddings]."""
    net.vocab = c.integer(2, 10)
    net.input_type, net.input_shape = TensorProto.INT64, (length,)
    table = net.const(net.rng.standard_normal((net.vocab, features)).astype(np.float32), "embedding")
    t = net.op("Gather", [table, "x"], axis=0)
    if not net.conserving and c.boolean():
        t = net.op("Add", [t, net.const(net.rng.standard_normal((length, features)).astype(np.float32) * 0.1, "pos")])
    return t


def _sequence_body(c, net, t, length, features):
    """Token models (N, T, F): position-wise dense layers (MatMul on 3-d tensors), attention,
    LayerNorm (op or decomposed), gates, and ops along tokens or features; then a pooling over
    the tokens or a Flatten."""
    for _ in range(c.integer(1, 3)):
        kind = c.choice(["dense", "dense", "attention", "attention", "norm", "norm", "concat", "act", "glu",
                         "slice", "split", "pad", "transpose", "resize", "where", "reduce", "token_mix", "conv1d",
                         "softmax"])
        if kind == "dense":  # MatMul or the same layer as Einsum (Keras EinsumDense, some torch exports)
            hidden = c.integer(1, 8)
            form = c.choice(["MatMul", "btf,fh->bth", "...f,fh->...h"])
            y = net.op("MatMul", [t, net.weight((features, hidden), features)]) if form == "MatMul" else \
                net.op("Einsum", [t, net.weight((features, hidden), features)], equation=form)
            t = net.op("Add", [y, net.bias(hidden)]) if c.boolean() else y
        elif kind == "attention":
            t = _attention(c, net, t, length, features)
        elif kind == "norm":
            t = _layer_norm(c, net, t, features)
        elif kind == "concat":  # more tokens: the sequence and a transformed copy
            copy = net.op("MatMul", [t, net.weight((features, features), features)])
            t = net.op("Concat", [t, copy] if c.boolean() else [copy, t], axis=c.choice([1, 2, -1]))
        elif kind == "glu":  # a · σ(b), a and b dense projections of the same tokens
            hidden = c.integer(1, 6)
            a = net.op("MatMul", [t, net.weight((features, hidden), features)])
            gate = net.op("Sigmoid", [net.op("MatMul", [t, net.weight((features, hidden), features)])])
            t = net.op("Mul", [a, gate])
        elif kind == "slice" and length >= 2:
            axis, size = c.choice([(1, length), (2, features)])
            if size >= 2:
                start = c.integer(0, size - 2)
                t = net.op("Slice", [t, net.ints([start], "starts"), net.ints([size], "ends"), net.ints([axis], "axes")])
        elif kind == "split":
            axis, size = c.choice([(1, length), (2, features)])
            if size >= 2:
                first = c.integer(1, size - 1)
                a, b2 = net.op("Split", [t, net.ints([first, size - first], "split")], n_out=2, axis=axis)
                t = net.op("Concat", [b2, a], axis=axis)
        elif kind == "pad":
            pads = [0, c.integer(0, 2), c.integer(0, 1), 0, c.integer(0, 2), c.integer(0, 1)]
            mode = c.choice(["constant", "constant", "edge", "reflect"])
            if mode == "reflect" and any(pads[a] >= size or pads[a + 3] >= size for a, size in ((1, length), (2, features))):
                mode = "edge"
            t = net.op("Pad", [t, net.ints(pads, "pads")], mode=mode)
            net.zero_padded = net.zero_padded or mode == "constant"
        elif kind == "transpose":  # (N, T, F) -> (N, F, T): tokens become features
            t = net.op("Transpose", [t], perm=[0, 2, 1])
        elif kind == "resize":
            t = _resize(c, net, t, (length, features))
        elif kind == "where":
            t = _where(c, net, t, (length, features))
        elif kind == "reduce":  # a statistic over features or tokens, kept
            t = net.reduce(c.choice(["ReduceMean", "ReduceSum"]), t, [c.choice([1, 2])], keepdims=1)
        elif kind == "token_mix":  # W @ x: a dense layer across tokens (MLP-Mixer)
            t = net.op("MatMul", [net.weight((c.integer(1, 6), length), length), t])
        elif kind == "conv1d":  # (N, T, F) -> (N, F, T) -> Conv1d -> back
            k = c.integer(1, min(3, length))
            hidden = c.integer(1, 6)
            conv = net.op("Conv", [net.op("Transpose", [t], perm=[0, 2, 1]), net.weight((hidden, features, k), features * k)],
                          kernel_shape=[k], pads=[k // 2, (k - 1) // 2], strides=[c.integer(1, 2)])
            t = net.op("Transpose", [conv], perm=[0, 2, 1])
        elif kind == "softmax":  # not attention: over tokens or features (its rule does not conserve)
            t = net.op("Softmax", [t], axis=c.choice([1, 2, -1]))
            net.lossy["lrp0"].add("Softmax")
            net.lossy["cp_lrp"].add("Softmax")
        else:
            t = _activation(c, net, t)
        length, features = net.shape(t)
    if c.boolean():
        axis = c.choice([1, 2])
        return net.reduce(c.choice(["ReduceMean", "ReduceSum"]), t, [axis], keepdims=0), features if axis == 1 else length
    return net.op("Flatten", [t]), features * length


def _attention(c, net, t, length, features):
    """Scaled dot-product attention on (N, T, F), one or two heads, MatMul or Einsum, an
    optional mask added or selected by Where, output projection, optional residual sum."""
    heads, d = c.choice([1, 1, 2]), c.integer(1, 4)
    hidden = heads * d
    q, k, v = (net.op("MatMul", [t, net.weight((features, hidden), features)]) for _ in range(3))
    if heads > 1:  # (N, T, h·d) -> (N, h, T, d)
        q, k, v = (net.op("Transpose", [net.op("Reshape", [p, net.ints([0, 0, heads, d], "shape")])],
                          perm=[0, 2, 1, 3]) for p in (q, k, v))
    lead = "bh" if heads > 1 else "b"
    if c.boolean():
        perm = [0, 1, 3, 2] if heads > 1 else [0, 2, 1]
        scores = net.op("MatMul", [q, net.op("Transpose", [k], perm=perm)])
    else:
        eq = c.choice([f"{lead}id,{lead}jd->{lead}ij", "...id,...jd->...ij"])
        scores = net.op("Einsum", [q, k], equation=eq)
    scale = c.choice(["none", "mul", "div"])
    if scale == "mul":
        scores = net.op("Mul", [scores, net.const(np.float32(1 / np.sqrt(d)), "scale")])
    elif scale == "div":
        scores = net.op("Div", [scores, net.const(np.float32(np.sqrt(d)), "scale")])
    mask = c.choice(["none", "add", "where"])
    causal = np.triu(np.ones((length, length), bool), k=1)
    if mask == "add":
        fill = c.choice([-np.inf, -1e9, float(np.finfo(np.float32).min), -3.0])
        scores = net.op("Add", [scores, net.const(np.where(causal, fill, 0.0).astype(np.float32), "mask")])
    elif mask == "where":
        fill = net.const(np.float32(c.choice([-np.inf, -1e9, float(np.finfo(np.float32).min)])), "fill")
        scores = net.op("Where", [net.const(causal, "causal"), fill, scores])
    probs = net.op("Softmax", [scores], axis=-1)
    net.lossy["lrp0"].add("attention softmax")  # AttnLRP's softmax rule does not conserve; CP-LRP does
    if c.boolean():
        context = net.op("MatMul", [probs, v])
    else:
        context = net.op("Einsum", [probs, v], equation=c.choice([f"{lead}ij,{lead}jd->{lead}id", "...ij,...jd->...id"]))
    if heads > 1:
        context = net.op("Reshape", [net.op("Transpose", [context], perm=[0, 2, 1, 3]), net.ints([0, 0, hidden], "shape")])
    out = net.op("MatMul", [context, net.weight((hidden, features), hidden)])
    if c.boolean():
        out = net.op("Add", [out, net.bias(features)])
    return net.op("Add", [t, out]) if c.boolean() else out


def _layer_norm(c, net, t, features):
    """LayerNormalization over the features, as the op or as torch spells it op by op."""
    gamma = net.const(net.rng.uniform(0.5, 1.5, features).astype(np.float32), "gamma")
    beta = net.bias(features)
    if net.zero_padded:  # centring turns padded zeros into constants that take relevance, as biases do
        net.lossy["lrp0"].add("normalisation after zero padding")
        net.lossy["cp_lrp"].add("normalisation after zero padding")
    if c.boolean():
        if c.integer(0, 3) == 0:  # over tokens and features: γ and β shaped (T, F)
            length = net.shape(t)[0]
            gamma = net.const(net.rng.uniform(0.5, 1.5, (length, features)).astype(np.float32), "gamma")
            beta = net.const(np.zeros((length, features), np.float32) if net.conserving else
                             (net.rng.standard_normal((length, features)) * 0.1).astype(np.float32), "b")
            return net.op("LayerNormalization", [t, gamma, beta], axis=c.choice([1, -2]), epsilon=1e-5)
        return net.op("LayerNormalization", [t, gamma, beta], axis=-1, epsilon=1e-5)
    mean = net.reduce("ReduceMean", t, [-1], keepdims=1)
    centred = net.op("Sub", [t, mean])
    square = net.op("Mul", [centred, centred]) if c.boolean() else net.op("Pow", [centred, net.const(np.float32(2.0), "two")])
    var = net.reduce("ReduceMean", square, [-1], keepdims=1)
    std = net.op("Sqrt", [net.op("Add", [var, net.const(np.float32(1e-5), "eps")])])
    if c.boolean():
        normed = net.op("Div", [centred, std])
    else:
        normed = net.op("Mul", [centred, net.op("Reciprocal", [std])])
    scaled = net.op("Mul", [normed, gamma])
    return net.op("Add", [scaled, beta]) if not net.conserving or c.boolean() else scaled


def _recurrent(c, net, x, steps, features):
    """One LSTM/GRU/RNN on batch-first x (N, T, F): ``layout=1`` reads it directly, ``layout=0``
    after a Transpose; Y (every step, batch-first, directions × hidden flattened) or Y_h read."""
    op = c.choice(["LSTM", "GRU", "RNN"])
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    direction = c.choice(["forward", "reverse", "bidirectional"])
    dirs, hidden, layout = 2 if direction == "bidirectional" else 1, c.integer(1, 4), c.integer(0, 1)
    w = net.const((net.rng.standard_normal((dirs, gates * hidden, features)) / np.sqrt(features)).astype(np.float32))
    r = net.const((net.rng.standard_normal((dirs, gates * hidden, hidden)) / np.sqrt(hidden)).astype(np.float32))
    inputs = [x if layout else net.op("Transpose", [x], perm=[1, 0, 2]), w, r]
    if not net.conserving or c.boolean():
        inputs.append(net.const(np.zeros((dirs, 2 * gates * hidden), np.float32) if net.conserving else
                                (net.rng.standard_normal((dirs, 2 * gates * hidden)) * 0.3).astype(np.float32), "B"))
    if op == "LSTM" and c.boolean():  # peepholes: the cell state into the gates (held constant by the rules)
        inputs += [""] * (4 - len(inputs)) + ["", "", "", net.const(
            (net.rng.standard_normal((dirs, 3 * hidden)) * 0.5).astype(np.float32), "P")]
    attrs = {"hidden_size": hidden, "direction": direction, "layout": layout}
    if op == "GRU" and c.boolean():
        attrs["linear_before_reset"] = 1
    if op == "RNN" and c.boolean():
        attrs["activations"] = [c.choice(["Relu", "Tanh"])] * dirs
    y, y_h = net.op(op, inputs, n_out=2, **attrs)
    if c.boolean():  # Y: (T, D, N, H) or (N, T, D, H) -> (N, T·D·H)
        if not layout:
            y = net.op("Transpose", [y], perm=[2, 0, 1, 3])
        return net.op("Flatten", [y]), steps * dirs * hidden
    if not layout:  # Y_h: (D, N, H) or (N, D, H) -> (N, D·H)
        y_h = net.op("Transpose", [y_h], perm=[1, 0, 2])
    return net.op("Flatten", [y_h]), dirs * hidden


def _window(c, sizes, dilate=True) -> dict:
    """Kernel, strides, pads and dilations, drawn per axis, that fit ``sizes``."""
    kernel, strides, begin, end, dilations = [], [], [], [], []
    for size in sizes:
        k = c.integer(1, min(3, size))
        p0, p1 = c.integer(0, k - 1), c.integer(0, k - 1)
        d = 2 if dilate and k > 1 and c.integer(0, 3) == 0 and (k - 1) * 2 + 1 <= size + p0 + p1 else 1
        kernel.append(k), strides.append(c.integer(1, 3)), begin.append(p0), end.append(p1), dilations.append(d)
    attrs = dict(kernel_shape=kernel, strides=strides, pads=begin + end)
    if any(d != 1 for d in dilations):
        attrs["dilations"] = dilations
    return attrs


def _conv(c, net, t, ch, h, w):
    groups = c.choice([g for g in (1, 2, 3) if ch % g == 0])
    out = groups * c.integer(1, 3)
    attrs = _window(c, (h, w))
    kh, kw = attrs["kernel_shape"]
    inputs = [t, net.weight((out, ch // groups, kh, kw), ch // groups * kh * kw)]
    if c.boolean():
        inputs.append(net.bias(out))
    t = net.op("Conv", inputs, group=groups, **attrs)
    if c.boolean():
        t = _batchnorm(net, t, out)
    return _activation(c, net, t), out


def _conv_transpose(c, net, t, ch):
    """ConvTranspose (strides, pads, output_padding, groups), kept small."""
    groups = c.choice([g for g in (1, 2) if ch % g == 0])
    out = groups * c.integer(1, 2)
    k, stride = [c.integer(1, 3), c.integer(1, 3)], [c.integer(1, 2), c.integer(1, 2)]
    begin = [c.integer(0, k[0] - 1), c.integer(0, k[1] - 1)]
    pads = begin + [c.integer(0, k[i] - 1 - begin[i]) for i in range(2)]  # at least one output per input
    attrs = dict(kernel_shape=k, strides=stride, pads=pads, group=groups)
    if any(s > 1 for s in stride) and c.boolean():
        attrs["output_padding"] = [s - 1 for s in stride]
    inputs = [t, net.weight((ch, out // groups, *k), ch // groups * k[0] * k[1])]
    if c.boolean():
        inputs.append(net.bias(out))
    return net.op("ConvTranspose", inputs, **attrs)


def _same_conv(c, net, t, ch, out):
    k = c.choice([1, 3])
    return net.op("Conv", [t, net.weight((out, ch, k, k), ch * k * k)], kernel_shape=[k, k], pads=[k // 2] * 4)


def _batchnorm(net, t, ch):
    rng = net.rng
    scale = rng.uniform(0.5, 1.5, ch).astype(np.float32)
    var = rng.uniform(0.5, 2.0, ch).astype(np.float32)
    shift, mean = (np.zeros(ch, np.float32),) * 2 if net.conserving else (
        (rng.standard_normal(ch) * 0.1).astype(np.float32), (rng.standard_normal(ch) * 0.1).astype(np.float32))
    return net.op("BatchNormalization", [t, net.const(scale), net.const(shift), net.const(mean), net.const(var)])


def _activation(c, net, t):
    op = c.choice(ACTIVATIONS if net.conserving else ACTIVATIONS + BIASED_ACTIVATIONS)
    if op == "LeakyRelu":
        return net.op(op, [t], alpha=0.1)
    if op == "PRelu":  # one slope for all, or one per feature of the last axis
        slope = np.float32(0.2) if c.boolean() else net.rng.uniform(0.0, 0.5, net.shape(t)[-1:]).astype(np.float32)
        return net.op(op, [t, net.const(slope, "slope")])
    if op == "Mish" and net.opset < 18:  # an op from opset 18: x · tanh(softplus(x)) before
        return net.op("Mul", [t, net.op("Tanh", [net.op("Softplus", [t])])])
    if op == "Clip":
        low, high = c.choice([(0.0, 6.0), (-1.0, 1.0), (None, 2.0), (-0.5, None)])
        bounds = [net.const(np.float32(low)) if low is not None else "", net.const(np.float32(high)) if high is not None else ""]
        while bounds and not bounds[-1]:
            bounds.pop()
        return net.op(op, [t, *bounds])
    if op == "Gelu":
        form = c.choice(["erf", "tanh"] + (["op"] if net.opset >= 20 else []))
        if form == "op":
            return net.op("Gelu", [t], approximate=c.choice(["none", "tanh"]))
        return _gelu(net, t, form)
    return net.op(op, [t])


def _gelu(net, t, form):
    """GELU as exporters write it: ``x · 0.5 · (1 + erf(x / √2))`` or the tanh approximation."""
    if form == "erf":
        inner = net.op("Erf", [net.op("Div", [t, net.const(np.float32(np.sqrt(2.0)), "sqrt2")])])
    else:
        cube = net.op("Pow", [t, net.const(np.float32(3.0), "three")])
        poly = net.op("Add", [t, net.op("Mul", [cube, net.const(np.float32(0.044715), "k")])])
        inner = net.op("Tanh", [net.op("Mul", [poly, net.const(np.float32(np.sqrt(2 / np.pi)), "k")])])
    half = net.op("Mul", [net.op("Add", [inner, net.const(np.float32(1.0), "one")]), net.const(np.float32(0.5), "half")])
    return net.op("Mul", [t, half])


def _dense_body(c, net, t, features):
    for _ in range(c.integer(0, 2)):
        hidden = c.integer(2, 8)
        t = _dense(c, net, t, features, hidden)
        if c.boolean() and hidden % 2 == 0:  # a Reshape/Transpose detour and back
            r = net.op("Reshape", [t, net.ints([0, 2, hidden // 2], "shape")])
            r = net.op("Transpose", [r], perm=[0, 2, 1])
            t = net.op("Reshape", [r, net.ints([0, -1], "shape")])
        t, features = _activation(c, net, t), hidden
    return _dense(c, net, t, features, c.integer(2, 6))


def _dense(c, net, t, features, out):
    if c.boolean():
        trans_b = c.integer(0, 1)
        weight = net.weight((out, features) if trans_b else (features, out), features)
        inputs = [t, weight] + ([net.bias(out)] if c.boolean() else [])
        alpha, beta = c.choice([1.0, 0.5, 2.0]), c.choice([1.0, 0.5])
        return net.op("Gemm", inputs, transB=trans_b, alpha=alpha, beta=beta)
    y = net.op("MatMul", [t, net.weight((features, out), features)])
    return net.op("Add", [y, net.bias(out)]) if c.boolean() else y


# --- the property every valid model must have ----------------------------------------------
@dataclass
class Outcome:
    ok: bool
    kind: str  # "explained", "refused: <Error>", or what went wrong
    detail: str = ""
    info: dict = field(default_factory=dict)  # what was drawn (kind, ops), for the report


def composite_for(name: str):
    """The composite ``name`` stands for: ``lrp0`` (:data:`LRP0`), ``cp_lrp`` with ε = 0 (CP-LRP
    as LXT's efficient setting), or a preset name (``epsilon_gamma_box`` with a box of ±4)."""
    if name == "lrp0":
        return LRP0, {}
    if name == "cp_lrp":
        return CPLRP(epsilon=0.0), {}
    return name, {"low": -4.0, "high": 4.0} if name == "epsilon_gamma_box" else {}


def check_model(drawn: Drawn, composites=COMPOSITES, gradient: bool = True) -> Outcome:
    """Explain ``drawn`` with each composite: finite relevance, the model's own output, conservation
    under each composite of ``drawn.conserves``, and the gradient of the explained logit
    (``attribution``'s gradient program) against central finite differences of onnxruntime's
    plain run; or an :class:`OnnxLrpError` — never another error."""
    try:
        reference = drawn.reference()
    except Exception as exc:
        if "ShapeInferenceError" not in str(exc):  # the builder made an invalid model: a fuzzer bug
            return Outcome(False, "invalid drawn model", f"{type(exc).__name__}: {exc}")
        # onnxruntime checks a model against ONNX shape inference when it loads it: after a
        # ceil_mode pool on which the two disagree, a Flatten -> Gemm sized for what onnxruntime
        # computes cannot load, and one sized for the inferred shape cannot run. Not a model.
        return Outcome(True, "skipped: onnxruntime cannot run the drawn model", f"{type(exc).__name__}: {exc}")
    if not np.isfinite(reference).all():
        return Outcome(True, "skipped: the drawn model's output is not finite")
    names = list(composites) + [n for n in drawn.conserves if n not in composites and "Softmax" in drawn.ops]
    first = None
    for name in names:
        composite, kwargs = composite_for(name)
        try:
            explainer = onnx_lrp.Explainer(drawn.model, composite=composite, **kwargs)
            res = explainer.explain(drawn.x)
        except onnx_lrp.OnnxLrpError as exc:
            if "onnxruntime" in str(exc):  # a graph onnx-lrp built that onnxruntime rejects
                return Outcome(False, "explainer graph fails in onnxruntime", f"{name}: {exc}")
            return Outcome(True, f"refused: {type(exc).__name__}", f"{name}: {exc}")
        except Exception as exc:
            return Outcome(False, f"crash: {type(exc).__name__}", f"{name}: {exc}")
        first = first or (explainer, res.sources)
        if not np.isfinite(res.relevance).all():
            return Outcome(False, "non-finite relevance", name)
        # a model computing in float16 is explained in float32, and says so in a note
        rounding = 4e-3 * np.abs(reference).max() if any("float16" in n for n in res.notes) else 0.0
        if not np.allclose(res.output, reference, rtol=1e-4, atol=1e-5 + rounding):
            return Outcome(False, "output differs from onnxruntime",
                           f"{name}: max |Δ| {np.abs(res.output - reference).max():.3g}")
        if name in drawn.conserves:
            flat = res.relevance.reshape(len(res.relevance), -1).astype(np.float64)
            # float32 rounding grows with the magnitudes summed, not with their (cancelling) sum
            scale = np.abs(flat).sum(axis=1) + np.abs(res.target_output)
            if not (np.abs(flat.sum(axis=1) - res.target_output) <= 1e-4 * scale + 1e-6).all():
                return Outcome(False, f"{name} does not conserve",
                               f"relevance sum / logit = {flat.sum(axis=1) / res.target_output}")
    if gradient and first is not None and "Cast" not in drawn.ops:
        return check_gradient(drawn, *first, reference)
    return Outcome(True, "explained")


#: Central-difference steps: a kink (ReLU, max pool, clip) within reach of one of them makes the
#: differences disagree with each other, so a direction proves something only where all agree.
STEPS = (1e-2, 3e-3, 1e-3)


def check_gradient(drawn: Drawn, explainer, sources: dict, reference, directions: int = 3) -> Outcome:
    """The explainer's gradient of the predicted logit against central finite differences of the
    plain onnxruntime run along random directions. A direction along which the step sizes
    disagree crossed a kink and proves nothing; one where they agree with each other but not
    with the gradient is a wrong gradient. For token ids the gradient is at the embedding output
    (``sources``), and the differences are taken there, on the model cut at that tensor."""
    from model_builders import run
    from onnx_lrp.attribution import attributor

    target = reference.reshape(len(drawn.x), -1).argmax(axis=1)
    try:
        grad = attributor(explainer).gradient(drawn.x, target).astype(np.float64)
    except onnx_lrp.OnnxLrpError as exc:
        return Outcome(True, f"refused: {type(exc).__name__}", f"gradient: {exc}")
    except Exception as exc:
        return Outcome(False, f"crash: {type(exc).__name__}", f"gradient: {exc}")
    model, x, name = drawn.reference_model or drawn.model, drawn.x, "x"
    if drawn.integer_input:  # differences at the embedding output: the model from there on
        name = sources["x"]
        x = next(iter(run(_with_outputs(model, [name]), {"x": drawn.x}).values()))
        model = _cut_at(model, name, x.shape[1:])
    if grad.shape != x.shape or not np.isfinite(grad).all():
        return Outcome(False, "gradient not finite or misshapen", f"{grad.shape} for {x.shape}")
    v = np.random.default_rng(0).standard_normal((directions, *x.shape))
    points = [x + sign * h * d for d in v for h in STEPS for sign in (1, -1)] + [x]
    out = next(iter(run(model, {name: np.concatenate(points).astype(np.float32)}).values()))
    f = out.reshape(len(points), len(x), -1)[:, np.arange(len(x)), target].astype(np.float64)
    f0, f = f[-1], f[:-1].reshape(directions, len(STEPS), 2, len(x))
    fd = (f[:, :, 0] - f[:, :, 1]) / (2 * np.array(STEPS)[None, :, None])  # (directions, steps, N)
    # one-sided differences: a kink closer than every step averages two slopes in the central
    # difference (the same at every step), but the forward and backward slopes differ
    one_sided = np.abs(f[:, -1, 0] + f[:, -1, 1] - 2 * f0) / STEPS[-1]
    sample_axes = tuple(range(2, x.ndim + 1))
    gv = (grad[None] * v).sum(axis=sample_axes)  # (directions, N)
    scale = np.abs(grad[None] * v).sum(axis=sample_axes)
    # float32 rounding of the logit, divided by the smallest step
    noise = 1e-7 * (1 + np.abs(f).max(axis=(1, 2))) / STEPS[-1]
    spread = fd.max(axis=1) - fd.min(axis=1)  # truncation and rounding, seen across the steps
    smooth = (spread <= 2e-3 * scale + 20 * noise) & (one_sided <= 1e-2 * scale + 40 * noise)
    wrong = smooth & (np.abs(gv - fd[:, -1]) > 10 * spread + 1e-3 * scale + 40 * noise)
    if wrong.any():
        d, n = np.argwhere(wrong)[0]
        return Outcome(False, "gradient differs from finite differences",
                       f"sample {n}: gradient·v {gv[d, n]:.6g}, finite differences {fd[d, :, n]}, Σ|g·v| {scale[d, n]:.3g}")
    return Outcome(True, "explained")


def _with_outputs(model: onnx.ModelProto, names) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.output[:]
    out.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    return out


def _cut_at(model: onnx.ModelProto, tensor: str, sample_shape) -> onnx.ModelProto:
    """``model`` with ``tensor`` a float graph input in place of the nodes that computed it."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    needed, keep = {tensor}, []
    producers = {o: n for n in out.graph.node for o in n.output}
    stack = [tensor]
    while stack:  # the nodes upstream of the cut
        node = producers.get(stack.pop())
        if node is not None and node.name not in needed:
            needed.add(node.name)
            stack.extend(node.input)
    keep = [n for n in out.graph.node if n.name not in needed]
    del out.graph.node[:]
    out.graph.node.extend(keep)
    del out.graph.input[:]
    out.graph.input.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, ["N", *sample_shape]))
    return out


def model_cases(count: int, seed: int, composites=COMPOSITES, kind: str | None = None) -> list[dict]:
    """``count`` random-model cases for :func:`run_in_subprocess`: the model is drawn in the child
    from ``seed * 1_000_003 + i`` (bias-free for even ``i``)."""
    return [{"kind": "model", "seed": seed * 1_000_003 + i, "conserving": i % 2 == 0,
             "composites": list(composites), "model_kind": kind} for i in range(count)]


def check_model_case(case: dict) -> Outcome:
    try:
        drawn = random_model(NumpyChooser(case["seed"]), case["conserving"], case.get("model_kind"))
    except Exception as exc:  # the generator itself failed: a fuzzer bug, reported as a failure
        if "ShapeInferenceError" in str(exc):  # as in check_model: after a ceil pool inference gets wrong
            return Outcome(True, "skipped: onnxruntime cannot run the drawn model", f"{type(exc).__name__}: {exc}")
        return Outcome(False, "generator failed", f"{type(exc).__name__}: {exc}")
    outcome = check_model(drawn, tuple(case["composites"]))
    outcome.info = {"kind": drawn.kind, "ops": sorted(set(drawn.ops)), "conserves": list(drawn.conserves)}
    return outcome


# --- mutated model bytes -----------------------------------------------------------------------
def base_models() -> list[tuple[onnx.ModelProto, np.ndarray]]:
    """A few small valid models to mutate (deterministic)."""
    out = []
    for seed, kind in enumerate(["image", "sequence", "image", "vector"]):
        drawn = random_model(NumpyChooser(1000 + seed), kind=kind)
        out.append((drawn.model, drawn.x))
    return out


MUTATIONS = ["bit_flip", "truncate", "cycle", "dangling_input", "duplicate_node_name", "empty_node_name",
             "odd_names", "wrong_attribute_type", "duplicate_output", "bad_raw_data", "wrong_dims",
             "wrong_element_type"]
#: Mutations that leave a valid model: it must be explained, not refused.
VALID_MUTATIONS = {"duplicate_node_name", "empty_node_name", "odd_names"}


def mutate(model: onnx.ModelProto, kind: str, rng: np.random.Generator) -> bytes:
    if kind in ("bit_flip", "truncate"):
        data = bytearray(model.SerializeToString())
        if kind == "truncate":
            return bytes(data[:int(rng.integers(0, len(data)))])
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, len(data)))
            data[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(data)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = m.graph.node
    i = int(rng.integers(0, len(nodes)))
    if kind == "cycle":  # an earlier node reads a later node's output
        j = int(rng.integers(i, len(nodes)))
        nodes[i].input[0] = nodes[j].output[0]
    elif kind == "dangling_input":
        nodes[i].input[0] = "nowhere"
    elif kind == "duplicate_node_name":
        for n in nodes:
            n.name = "same"
    elif kind == "empty_node_name":
        for n in nodes:
            n.name = ""
    elif kind == "odd_names":
        _rename_tensors(m, rng)
    elif kind == "wrong_attribute_type":
        with_attrs = [n for n in nodes if n.attribute]
        if with_attrs:
            a = with_attrs[int(rng.integers(0, len(with_attrs)))].attribute[0]
            a.CopyFrom(helper.make_attribute(a.name, "not-a-number"))
        else:
            nodes[i].attribute.append(helper.make_attribute("bogus", 1.5))
    elif kind == "duplicate_output":  # two nodes write the same tensor
        j = int(rng.integers(0, len(nodes)))
        nodes[j].output[0] = nodes[i].output[0]
    elif kind == "wrong_dims":  # declared dims that do not match the data held
        t = max(m.graph.initializer, key=lambda t: len(t.raw_data))
        t.dims[0] = int(rng.choice([t.dims[0] + 1, 10**12]))
    elif kind == "wrong_element_type":  # no such type, or one that does not match the data
        t = m.graph.initializer[int(rng.integers(0, len(m.graph.initializer)))]
        t.data_type = int(rng.choice([d for d in (65, 0, TensorProto.INT64, TensorProto.STRING) if d != t.data_type]))
    elif kind == "bad_raw_data":
        t = m.graph.initializer[int(rng.integers(0, len(m.graph.initializer)))]
        t.raw_data = t.raw_data[: len(t.raw_data) // 2 + 1]
    return m.SerializeToString()


def _rename_tensors(m: onnx.ModelProto, rng) -> None:
    """Valid but unusual names: '/', ':', unicode, spaces, names like the explainer's own."""
    pool = ["a/b", "x:0", "név/ü:1", "Σ", "target", "relevance", "lrp/Mul_1", "relevance:x", " sp ace ", "日本"]
    names = {}
    for n in m.graph.node:
        for t in n.output:
            names.setdefault(t, f"{pool[int(rng.integers(0, len(pool)))]}#{len(names)}" if rng.integers(0, 3)
                             else pool[len(names) % len(pool)])
    # keep them unique: a pool name used twice gets a suffix
    seen, unique = set(), {}
    for old, new in names.items():
        while new in seen:
            new += "'"
        seen.add(new)
        unique[old] = new
    for n in m.graph.node:
        n.output[:] = [unique.get(t, t) for t in n.output]
        n.input[:] = [unique.get(t, t) for t in n.input]
        n.name = unique.get(n.output[0], n.name)
    for o in m.graph.output:
        o.name = unique.get(o.name, o.name)


def mutant_cases(count: int, seed: int) -> list[dict]:
    """``count`` mutation cases (kind, bytes as hex, input) drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    bases = [(model, x, _reference(model, x)) for model, x in base_models()]
    cases = []
    for i in range(count):
        kind = MUTATIONS[i % len(MUTATIONS)]
        model, x, reference = bases[int(rng.integers(0, len(bases)))]
        cases.append({"kind": kind, "bytes": mutate(model, kind, rng).hex(), "x": x.tolist(),
                      "reference": reference})
    return cases


def _reference(model, x):
    from model_builders import run
    return next(iter(run(model, {"x": x}).values())).tolist()


def check_mutant(case: dict) -> Outcome:
    """Loading and explaining a mutated model gives an OnnxLrpError (ModelLoadError or InvalidInput
    for broken files), or, for a valid mutation, the model's own output."""
    data = bytes.fromhex(case["bytes"])
    x = np.asarray(case["x"], np.float32)
    try:
        res = onnx_lrp.Explainer(data, composite="epsilon_plus_flat").explain(x)
    except (onnx_lrp.ModelLoadError, onnx_lrp.InvalidInput) as exc:
        if case["kind"] in VALID_MUTATIONS:
            return Outcome(False, f"valid model refused: {type(exc).__name__}", str(exc))
        return Outcome(True, f"refused: {type(exc).__name__}", str(exc)[:200])
    except onnx_lrp.OnnxLrpError as exc:
        if case["kind"] == "bit_flip" and "onnxruntime" not in str(exc):
            return Outcome(True, f"refused: {type(exc).__name__}", str(exc)[:200])  # e.g. a flipped attribute
        return Outcome(False, f"{type(exc).__name__} instead of ModelLoadError/InvalidInput", str(exc)[:300])
    except Exception as exc:
        return Outcome(False, f"crash: {type(exc).__name__}", str(exc)[:300])
    if not np.isfinite(res.relevance).all():
        return Outcome(False, "non-finite relevance")
    reference = np.asarray(case["reference"], np.float32)
    rounding = 4e-3 * np.abs(reference).max() if any("float16" in n for n in res.notes) else 0.0
    if case["kind"] in VALID_MUTATIONS and not np.allclose(res.output, reference, rtol=1e-4, atol=1e-5 + rounding):
        return Outcome(False, "output differs from the unmutated model")
    return Outcome(True, "explained")


def run_in_subprocess(cases: list[dict], timeout: float = 600, per_case: float | None = None) -> list[Outcome]:
    """Check ``cases`` (mutants, or :func:`model_cases`) in a child process (a native crash in
    onnxruntime or protobuf must not take the fuzzer down): one child runs them in order; when it
    dies, or runs past ``timeout`` (past ``per_case`` seconds a case when given), the case it was
    on is recorded as a failure and a new child resumes after it."""
    outcomes: list[Outcome] = []
    here = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")]))
    while len(outcomes) < len(cases):
        rest = cases[len(outcomes):]
        limit = timeout if per_case is None else per_case * len(rest)
        try:
            proc = subprocess.run([sys.executable, "-c", "import fuzz_cases; fuzz_cases._child()"],
                                  input=json.dumps(rest), capture_output=True, text=True, env=env, timeout=limit)
            stdout, stderr, died = proc.stdout, proc.stderr, f"native crash (exit {proc.returncode})"
            failed = proc.returncode != 0
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            stderr, died, failed = "", f"hang (no answer in {limit:.0f} s)", True
        for line in stdout.splitlines():
            if line.startswith("OUTCOME "):
                outcomes.append(Outcome(**json.loads(line[8:])))
        if failed and len(outcomes) < len(cases):
            case = cases[len(outcomes)]
            outcomes.append(Outcome(False, died, f"{case['kind']} {case.get('seed', '')}: {stderr[-300:]}"))
    return outcomes


def _child() -> None:
    import warnings
    warnings.filterwarnings("ignore")
    abort_on = os.environ.get("FUZZ_ABORT_ON")  # lets the tests prove a dying child is caught
    for case in json.loads(sys.stdin.read()):
        if abort_on and case["kind"] == abort_on:
            os.abort()
        outcome = check_model_case(case) if case["kind"] == "model" else check_mutant(case)
        print("OUTCOME " + json.dumps(outcome.__dict__), flush=True)
