"""Random valid models, mutated model bytes and the checks both must pass (used by
``tests/test_fuzz.py`` with a fixed seed and few examples, and by ``tools/fuzz.py`` for deep runs).

A model is drawn through a :class:`Chooser` (hypothesis' ``data.draw`` or a seeded numpy
generator), so the same builder serves shrinking property tests and long seeded campaigns.
Bodies mix the supported ops — Conv (asymmetric kernels, strides and pads, groups, dilation),
BatchNorm (folded), activations, MaxPool/AveragePool (``ceil_mode``, dilation,
``count_include_pad``), residual sums and differences, channel Concat and Split, gates
``x·σ(conv(x))``, Pad, Slice, Transpose, Reshape and Unsqueeze/Squeeze round trips, constant
scales, Identity/Dropout, float16 Cast round trips — and end in Flatten, GlobalAveragePool or a
spatial ReduceMean/ReduceSum, dense layers (Gemm with alpha/beta/transB or MatMul + Add,
Reshape/Transpose detours) and the logits. With ``conserving=True`` every bias, BatchNorm mean
and shift is zero and activations have f(0) = 0, so LRP-0 must conserve.
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
from onnx_lrp.composites import EpsilonComposite
from onnx_lrp.rules import Norm

#: LRP-0 (Epsilon with ε = 0; Norm, i.e. ε = 0 too, for sums and average pools).
LRP0 = EpsilonComposite(epsilon=0.0, type_map={"Add": Norm(0.0), "AveragePool": Norm(0.0),
                                               "GlobalAveragePool": Norm(0.0)})
#: Activations with f(0) = 0. Sigmoid and Softplus (f(0) > 0) act like a bias where their input
#: is exactly 0 (a dead unit upstream): LRP-0 then loses that relevance by design, so they are
#: drawn only into models that are not checked for conservation.
ACTIVATIONS = ["Relu", "LeakyRelu", "Tanh", "Elu", "Clip"]
BIASED_ACTIVATIONS = ["Sigmoid", "Softplus"]


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


class _Net:
    def __init__(self, seed: int, conserving: bool):
        self.rng = np.random.default_rng(seed)
        self.conserving = conserving
        self.nodes, self.inits, self.ops = [], [], []

    def name(self, hint: str) -> str:
        return f"{hint}_{len(self.nodes) + len(self.inits)}"

    def const(self, array, hint="w") -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

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


def _run_shape(net, t: str, x_shape) -> tuple:
    """The shape onnxruntime gives ``t`` (one sample): ceil_mode pools are what onnxruntime
    makes of them, which is exactly what the fuzzer must not predict with its own formula."""
    from model_builders import run
    graph = helper.make_graph(net.nodes, "partial", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                  ["N", *x_shape])],
                              [helper.make_tensor_value_info(t, TensorProto.FLOAT, None)], net.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return tuple(next(iter(run(model, {"x": np.zeros((1, *x_shape), np.float32)}).values())).shape[1:])


def random_model(c: Chooser, conserving: bool = True) -> Drawn:
    """A random valid model and an input for it."""
    net = _Net(c.integer(0, 2**31 - 1), conserving)
    kind = c.choice(["image", "image", "image", "sequence", "vector"])
    if kind == "image":
        ch, h, w = c.integer(1, 4), c.integer(1, 12), c.integer(1, 12)
        t, x_shape = _image_body(c, net, "x", ch, h, w)
    elif kind == "sequence":
        x_shape = (c.integer(1, 6), c.integer(1, 8))
        t = _sequence_body(c, net, "x", *x_shape)
    else:
        t, x_shape = "x", (c.integer(1, 12),)
        features = x_shape[0]
        t = _dense_body(c, net, t, features)
    graph = helper.make_graph(net.nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                ["N", *x_shape])],
                              [helper.make_tensor_value_info(t, TensorProto.FLOAT, ["N", None])], net.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    batch = c.integer(1, 3)
    x = net.rng.standard_normal((batch, *x_shape)).astype(np.float32)
    return Drawn(model, x, net.ops, conserving)


def _image_body(c, net, t, ch, h, w):
    x_shape = (ch, h, w)
    for _ in range(c.integer(1, 4)):
        kind = c.choice(["conv", "conv", "pool", "residual", "concat", "gate", "transpose", "cast", "act",
                         "pad", "slice", "split", "reshape", "scale", "sub", "identity", "squeeze"])
        if kind == "conv":
            t, ch, h, w = _conv(c, net, t, ch, h, w, x_shape)
        elif kind == "pool":
            op = c.choice(["MaxPool", "AveragePool"])
            attrs = _window(c, (h, w), dilate=op == "MaxPool")
            attrs["ceil_mode"] = c.integer(0, 1)
            if op == "AveragePool":
                attrs["count_include_pad"] = c.integer(0, 1)
            t = net.op(op, [t], **attrs)
            _, h, w = _run_shape(net, t, x_shape)
        elif kind == "residual":
            branch = net.op("Relu", [_same_conv(c, net, t, ch, ch)])
            t = net.op("Add", [t, branch])
        elif kind == "concat":
            extra = c.integer(1, 3)
            t, ch = net.op("Concat", [t, _same_conv(c, net, t, ch, extra)], axis=1), ch + extra
        elif kind == "gate":
            gate = net.op(c.choice(["Sigmoid", "HardSigmoid"]), [_same_conv(c, net, t, ch, ch)])
            t = net.op("Mul", [t, gate])
        elif kind == "transpose":
            t, h, w = net.op("Transpose", [t], perm=[0, 1, 3, 2]), w, h
        elif kind == "cast":
            t = net.op("Cast", [net.op("Cast", [t], to=TensorProto.FLOAT16)], to=TensorProto.FLOAT)
        elif kind == "pad":
            before, after = c.integer(0, 2), c.integer(0, 2)
            pads = net.const(np.array([0, 0, before, after, 0, 0, after, before], np.int64), "pads")
            t, h, w = net.op("Pad", [t, pads]), h + before + after, w + after + before
        elif kind == "slice" and h >= 2:
            start = c.integer(0, h - 2)
            t = net.op("Slice", [t, net.const(np.array([start], np.int64), "starts"),
                                 net.const(np.array([h], np.int64), "ends"), net.const(np.array([2], np.int64), "axes")])
            h -= start
        elif kind == "split" and ch >= 2:  # swap two channel groups
            first = c.integer(1, ch - 1)
            a, b2 = net.op("Split", [t, net.const(np.array([first, ch - first], np.int64), "split")], n_out=2, axis=1)
            t = net.op("Concat", [b2, a], axis=1)
        elif kind == "reshape":  # (N, C, H, W) -> (N, C, H*W) -> back
            flat = net.op("Reshape", [t, net.const(np.array([0, ch, h * w], np.int64), "shape")])
            t = net.op("Reshape", [flat, net.const(np.array([0, ch, h, w], np.int64), "shape")])
        elif kind == "scale":  # a per-channel constant factor or divisor (folded or routed)
            factor = net.rng.uniform(0.5, 2.0, (1, ch, 1, 1)).astype(np.float32)
            t = net.op(c.choice(["Mul", "Div"]), [t, net.const(factor, "scale")])
        elif kind == "sub":  # a residual difference
            t = net.op("Sub", [t, net.op("Relu", [_same_conv(c, net, t, ch, ch)])])
        elif kind == "identity":
            t = net.op(c.choice(["Identity", "Dropout"]), [t])
        elif kind == "squeeze":  # (N, C, H, W) -> (N, 1, C, H, W) -> back
            axes = net.const(np.array([1], np.int64), "axes")
            t = net.op("Squeeze", [net.op("Unsqueeze", [t, axes]), axes])
        else:
            t = _activation(c, net, t)
    head = c.integer(0, 3)
    if head == 0:
        t, features = net.op("Flatten", [net.op("GlobalAveragePool", [t])]), ch
    elif head == 1:
        if c.boolean():  # opset 17: ReduceSum takes its axes as an input, ReduceMean as an attribute
            t = net.op("ReduceSum", [t, net.const(np.array([2, 3], np.int64), "axes")], keepdims=0)
        else:
            t = net.op("ReduceMean", [t], axes=[2, 3], keepdims=0)
        features = ch
    else:
        t, features = net.op("Flatten", [t]), ch * h * w
    return _dense_body(c, net, t, features), x_shape


def _sequence_body(c, net, t, length, features):
    """Token models: x (N, T, F) -> position-wise dense layers (MatMul on 3-d tensors),
    LayerNormalization, a Transpose, spatial Concat, then a pooling over the tokens."""
    for _ in range(c.integer(1, 3)):
        kind = c.choice(["dense", "dense", "norm", "concat", "act"])
        if kind == "dense":
            hidden = c.integer(1, 8)
            y = net.op("MatMul", [t, net.weight((features, hidden), features)])
            t, features = (net.op("Add", [y, net.bias(hidden)]) if c.boolean() else y), hidden
        elif kind == "norm" and not net.conserving:  # LayerNorm's shift is a bias
            scale = net.const(net.rng.uniform(0.5, 1.5, features).astype(np.float32))
            shift = net.const((net.rng.standard_normal(features) * 0.1).astype(np.float32))
            t = net.op("LayerNormalization", [t, scale, shift], axis=-1, epsilon=1e-5)
        elif kind == "concat":  # more tokens: the sequence and a transformed copy
            copy = net.op("MatMul", [t, net.weight((features, features), features)])
            t, length = net.op("Concat", [t, copy], axis=1), 2 * length
        else:
            t = _activation(c, net, t)
    if c.boolean():
        t = net.op("ReduceMean", [net.op("Transpose", [t], perm=[0, 2, 1])], axes=[2], keepdims=0)
    else:
        t, features = net.op("Flatten", [t]), features * length
    return _dense_body(c, net, t, features)


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


def _conv(c, net, t, ch, h, w, x_shape):
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
    t = _activation(c, net, t)
    _, h, w = _run_shape(net, t, x_shape)
    return t, out, h, w


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
    if op == "Clip":
        return net.op(op, [t, net.const(np.float32(0.0)), net.const(np.float32(6.0))])
    return net.op(op, [t])


def _dense_body(c, net, t, features):
    for _ in range(c.integer(0, 2)):
        hidden = c.integer(2, 8)
        t = _dense(c, net, t, features, hidden)
        if c.boolean() and hidden % 2 == 0:  # a Reshape/Transpose detour and back
            r = net.op("Reshape", [t, net.const(np.array([0, 2, hidden // 2], np.int64), "shape")])
            r = net.op("Transpose", [r], perm=[0, 2, 1])
            t = net.op("Reshape", [r, net.const(np.array([0, -1], np.int64), "shape")])
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


def check_model(drawn: Drawn, composites=("lrp0", "epsilon_plus_flat")) -> Outcome:
    """Explain ``drawn`` with each composite: finite relevance, the model's own output, LRP-0
    conservation when the model has no biases; or an :class:`OnnxLrpError` — never another error."""
    from model_builders import run

    try:
        reference = run(drawn.model, {"x": drawn.x})
    except Exception as exc:
        if "ShapeInferenceError" not in str(exc):  # the builder made an invalid model: a fuzzer bug
            return Outcome(False, "invalid drawn model", f"{type(exc).__name__}: {exc}")
        # onnxruntime checks a model against ONNX shape inference when it loads it: after a
        # ceil_mode pool on which the two disagree, a Flatten -> Gemm sized for what onnxruntime
        # computes cannot load, and one sized for the inferred shape cannot run. Not a model.
        return Outcome(True, "skipped: onnxruntime cannot run the drawn model", f"{type(exc).__name__}: {exc}")
    expected = next(iter(reference.values()))
    for name in composites:
        composite = LRP0 if name == "lrp0" else name
        kwargs = {"low": -4.0, "high": 4.0} if name == "epsilon_gamma_box" else {}
        try:
            res = onnx_lrp.Explainer(drawn.model, composite=composite, **kwargs).explain(drawn.x)
        except onnx_lrp.OnnxLrpError as exc:
            if "onnxruntime" in str(exc):  # a graph onnx-lrp built that onnxruntime rejects
                return Outcome(False, "explainer graph fails in onnxruntime", f"{name}: {exc}")
            return Outcome(True, f"refused: {type(exc).__name__}", str(exc))
        except Exception as exc:
            return Outcome(False, f"crash: {type(exc).__name__}", f"{name}: {exc}")
        if not np.isfinite(res.relevance).all():
            return Outcome(False, "non-finite relevance", name)
        if not np.allclose(res.output, expected, rtol=1e-4, atol=1e-5):
            return Outcome(False, "output differs from onnxruntime",
                           f"{name}: max |Δ| {np.abs(res.output - expected).max():.3g}")
        if name == "lrp0" and drawn.conserving:
            flat = res.relevance.reshape(len(res.relevance), -1).astype(np.float64)
            # float32 rounding grows with the magnitudes summed, not with their (cancelling) sum
            scale = np.abs(flat).sum(axis=1) + np.abs(res.target_output)
            if not (np.abs(flat.sum(axis=1) - res.target_output) <= 1e-4 * scale + 1e-6).all():
                return Outcome(False, "LRP-0 does not conserve",
                               f"relevance sum / logit = {flat.sum(axis=1) / res.target_output}")
    return Outcome(True, "explained")


# --- mutated model bytes -----------------------------------------------------------------------
def base_models() -> list[tuple[onnx.ModelProto, np.ndarray]]:
    """A few small valid models to mutate (deterministic)."""
    out = []
    for seed in range(4):
        drawn = random_model(NumpyChooser(1000 + seed))
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
    if case["kind"] in VALID_MUTATIONS and not np.allclose(res.output, case["reference"], rtol=1e-4, atol=1e-5):
        return Outcome(False, "output differs from the unmutated model")
    return Outcome(True, "explained")


def run_in_subprocess(cases: list[dict], timeout: float = 600) -> list[Outcome]:
    """Check ``cases`` in a child process (a native crash in onnxruntime or protobuf must not take
    the fuzzer down): one child runs them in order; when it dies, the case it was on is recorded
    as a crash and a new child resumes after it."""
    outcomes: list[Outcome] = []
    here = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")]))
    while len(outcomes) < len(cases):
        rest = cases[len(outcomes):]
        proc = subprocess.run([sys.executable, "-c", "import fuzz_cases; fuzz_cases._child()"],
                              input=json.dumps(rest), capture_output=True, text=True, env=env, timeout=timeout)
        for line in proc.stdout.splitlines():
            if line.startswith("OUTCOME "):
                outcomes.append(Outcome(**json.loads(line[8:])))
        if proc.returncode != 0 and len(outcomes) < len(cases):
            outcomes.append(Outcome(False, f"native crash (exit {proc.returncode})",
                                    f"{cases[len(outcomes)]['kind']}: {proc.stderr[-300:]}"))
    return outcomes


def _child() -> None:
    import warnings
    warnings.filterwarnings("ignore")
    abort_on = os.environ.get("FUZZ_ABORT_ON")  # lets the tests prove a dying child is caught
    for case in json.loads(sys.stdin.read()):
        if abort_on and case["kind"] == abort_on:
            os.abort()
        outcome = check_mutant(case)
        print("OUTCOME " + json.dumps(outcome.__dict__), flush=True)
