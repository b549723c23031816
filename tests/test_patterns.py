"""Graph patterns that exporters spell op by op: x·f(x) activations, gates, decomposed LayerNorm,
run-time Gather indices; and the override that lets an unsupported op through.

Each model is built with onnx.helper as torch/tf2onnx/PaddlePaddle export the pattern. Checked:
the category and signal the compiler gives the product node; that Pass gives the signal all the
relevance (the gate or statistic none); that Uniform splits it; and that a Gradient-everywhere
composite (what gradient-based attributions compile) is the true gradient of the model, against
central finite differences in float64 of a numpy re-implementation.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from onnx_lrp import rules
from onnx_lrp.compile import RELEVANCE, TARGET, compile_explainer, plan_nodes
from onnx_lrp.composites import Composite
from onnx_lrp.errors import CompositeError, UnsupportedOp
from onnx_lrp.executor import CPU, make_session

C, H, W = 4, 5, 5
RNG = np.random.default_rng(0)
CONV_W = (RNG.standard_normal((C, 3, 3, 3)) * 0.4).astype(np.float32)
CONV_B = (RNG.standard_normal(C) * 0.2).astype(np.float32)
FC_W = (RNG.standard_normal((3, C)) * 0.5).astype(np.float32)
SE1 = (RNG.standard_normal((2, C, 1, 1)) * 0.5).astype(np.float32)
SE2 = (RNG.standard_normal((C, 2, 1, 1)) * 0.5).astype(np.float32)
GAMMA = RNG.uniform(0.5, 1.5, (C, 1, 1)).astype(np.float32)
BETA = (RNG.standard_normal((C, 1, 1)) * 0.3).astype(np.float32)


def node(op, inputs, output, **attrs):
    return helper.make_node(op, inputs, [output], name=output, **attrs)


def model_of(body, consts):
    """x (N,3,H,W) -> Conv(3->C, pad 1) = "c" -> body -> "act" -> GlobalAveragePool -> Flatten -> Gemm."""
    consts = {"cw": CONV_W, "cb": CONV_B, "fw": FC_W, **consts}
    nodes = [node("Conv", ["x", "cw", "cb"], "c", pads=[1, 1, 1, 1])] + body + [
        node("GlobalAveragePool", ["act"], "gap"), node("Flatten", ["gap"], "flat"),
        node("Gemm", ["flat", "fw"], "logits", transB=1)]
    inits = [numpy_helper.from_array(np.asarray(v, np.float32 if np.asarray(v).dtype.kind == "f" else None), k)
             for k, v in consts.items()]
    graph = helper.make_graph(nodes, "pattern", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                               ["N", 3, H, W])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def f32(v):
    return np.asarray(v, np.float32)


SQRT1_2 = f32(1 / math.sqrt(2))

# name -> (body nodes, constants, product node, category, signal tensor, numpy body)
PATTERNS = {
    "silu": ([node("Sigmoid", ["c"], "s"), node("Mul", ["c", "s"], "act")], {}, "act", "activation", "c",
             lambda c: c / (1 + np.exp(-c))),
    "hardswish_paddle": ([node("Add", ["c", "three"], "a3"), node("Clip", ["a3", "zero", "six"], "cl"),
                          node("Mul", ["c", "cl"], "m"), node("Div", ["m", "six"], "act")],
                         {"three": f32(3), "zero": f32(0), "six": f32(6)}, "m", "activation", "c",
                         lambda c: c * np.clip(c + 3, 0, 6) / 6),
    "x_hardsigmoid": ([node("HardSigmoid", ["c"], "hs", alpha=1 / 6, beta=0.5), node("Mul", ["hs", "c"], "act")],
                      {}, "act", "activation", "c", lambda c: c * np.clip(c / 6 + 0.5, 0, 1)),
    "gelu_torchscript": ([node("Div", ["c", "sqrt2"], "d"), node("Erf", ["d"], "e"), node("Add", ["e", "one"], "e1"),
                          node("Mul", ["c", "e1"], "m"), node("Mul", ["m", "half"], "act")],
                         {"sqrt2": f32(math.sqrt(2)), "one": f32(1), "half": f32(0.5)}, "m", "activation", "c",
                         None),
    "gelu_dynamo": ([node("Mul", ["c", "half"], "h"), node("Mul", ["c", "inv_sqrt2"], "d"), node("Erf", ["d"], "e"),
                     node("Add", ["e", "one"], "e1"), node("Mul", ["h", "e1"], "act")],
                    {"half": f32(0.5), "inv_sqrt2": SQRT1_2, "one": f32(1)}, "act", "activation", "h", None),
    "gelu_tanh_keras": ([node("Mul", ["half", "c"], "h"), node("Pow", ["c", "three"], "p"),
                         node("Mul", ["k", "p"], "kp"), node("Add", ["c", "kp"], "inner"),
                         node("Mul", ["s2pi", "inner"], "u"), node("Tanh", ["u"], "t"), node("Add", ["one", "t"], "t1"),
                         node("Mul", ["h", "t1"], "act")],
                        {"half": f32(0.5), "three": f32(3), "k": f32(0.044715), "s2pi": f32(math.sqrt(2 / math.pi)),
                         "one": f32(1)}, "act", "activation", "h", None),
    "squeeze_excitation": ([node("GlobalAveragePool", ["c"], "sq"), node("Conv", ["sq", "se1"], "e1"),
                            node("Relu", ["e1"], "r1"), node("Conv", ["r1", "se2"], "e2"),
                            node("HardSigmoid", ["e2"], "g", alpha=1 / 6, beta=0.5),
                            node("Reshape", ["g", "gshape"], "gr"), node("Expand", ["gr", "eshape"], "ge"),
                            node("Mul", ["c", "ge"], "act")],
                           {"se1": SE1, "se2": SE2, "gshape": np.asarray([-1, C, 1, 1], np.int64),
                            "eshape": np.asarray([1, C, H, W], np.int64)}, "act", "gate", "c", None),
    "se_decomposed_hardsigmoid": ([node("GlobalAveragePool", ["c"], "sq"), node("Conv", ["sq", "se1"], "e1"),
                                   node("Relu", ["e1"], "r1"), node("Conv", ["r1", "se2"], "e2"),
                                   node("Add", ["e2", "three"], "a3"), node("Clip", ["a3", "zero", "six"], "cl"),
                                   node("Div", ["cl", "six"], "g"), node("Mul", ["g", "c"], "act")],
                                  {"se1": SE1, "se2": SE2, "three": f32(3), "zero": f32(0), "six": f32(6)}, "act",
                                  "gate", "c", None),
    "glu": ([node("Split", ["c", "halves"], "a", axis=1), node("Sigmoid", ["b"], "sb"), node("Mul", ["a", "sb"], "act")],
            {"halves": np.asarray([2, 2], np.int64)}, "act", "gate", "a", None),
    "layernorm_decomposed": ([node("ReduceMean", ["c"], "mu", axes=[1]), node("Sub", ["c", "mu"], "d"),
                              node("Pow", ["d", "two"], "d2"), node("ReduceMean", ["d2"], "var", axes=[1]),
                              node("Add", ["var", "eps"], "ve"), node("Sqrt", ["ve"], "sd"), node("Div", ["d", "sd"], "n"),
                              node("Mul", ["n", "gamma"], "ng"), node("Add", ["ng", "beta"], "act")],
                             {"two": f32(2), "eps": f32(1e-5), "gamma": GAMMA, "beta": BETA}, "n", "normalize", "d",
                             None),
    "rmsnorm": ([node("Mul", ["c", "c"], "sq"), node("ReduceMean", ["sq"], "ms", axes=[1]),
                 node("Add", ["ms", "eps"], "me"), node("Sqrt", ["me"], "rms"), node("Reciprocal", ["rms"], "inv"),
                 node("Mul", ["c", "inv"], "n"), node("Mul", ["n", "gamma"], "act")],
                {"eps": f32(1e-5), "gamma": GAMMA}, "n", "normalize", "c", None),
}
# Split has two outputs; give the GLU's Split both names
PATTERNS["glu"][0][0] = helper.make_node("Split", ["c", "halves"], ["a", "b"], name="split", axis=1)

SMOOTH = ["silu", "gelu_torchscript", "gelu_dynamo", "gelu_tanh_keras", "glu", "layernorm_decomposed", "rmsnorm",
          "squeeze_excitation"]


def build(name):
    body, consts, *_ = PATTERNS[name]
    if name == "glu":  # the GLU halves the channels; its Gemm reads C/2 features
        consts = {**consts, "fw": FC_W[:, :C // 2]}
    return model_of(body, consts)


def steps_of(explainer, x):
    return {s.node.name: s for s in plan_nodes(explainer.graph(x.shape[1:]), explainer.composite)}


X = RNG.standard_normal((2, 3, H, W)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_product_is_recognised(name):
    _, _, product, category, signal, _ = PATTERNS[name]
    explainer = onnx_lrp.Explainer(build(name))
    step = steps_of(explainer, X)[product]
    assert step.category == category
    ordered = [step.node.input[i] for i in step.handler.relevant_inputs(step.node, explainer.graph(X.shape[1:]))]
    assert ordered[0] == signal and step.handler.signal(step.node, explainer.graph(X.shape[1:])) == 0
    assert isinstance(step.rule, rules.Pass)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pass_gives_the_signal_all_relevance(name):
    """Relevance arriving at the product reaches its signal unchanged; the gate/statistic gets none."""
    _, _, product, _, signal, _ = PATTERNS[name]
    result = onnx_lrp.Explainer(build(name)).explain(X, keep_layers=True)
    assert np.isfinite(result.relevance).all()
    layers = result.layers
    if name == "layernorm_decomposed":  # the centring Sub passes it on to the Conv output as well
        np.testing.assert_allclose(layers["c"], layers["act"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(layers[signal], layers[product], rtol=1e-5, atol=1e-7)
    other = next(t for t in onnx_lrp.Explainer(build(name)).graph(X.shape[1:]).nodes[product].input if t != signal)
    assert other not in layers or not np.any(layers[other]), "the gate / statistic must get no relevance"


def test_uniform_splits_a_gate_equally():
    model = build("squeeze_excitation")
    composite = onnx_lrp.composites.EpsilonPlusFlat(category_map={"gate": rules.Uniform()})
    layers = onnx_lrp.Explainer(model, composite=composite).explain(X, keep_layers=True).layers
    np.testing.assert_allclose(layers["ge"], layers["act"] / 2, rtol=1e-5, atol=1e-7)
    assert np.any(layers["sq"]), "with Uniform the gate branch carries relevance back"


def _numpy_forward(name):
    """float64 re-implementation of the model's body (for finite differences)."""
    def conv(x):
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        out = np.zeros((x.shape[0], C, H, W))
        for i in range(3):
            for j in range(3):
                out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + H, j:j + W], CONV_W[:, :, i, j].astype(np.float64))
        return out + CONV_B.reshape(1, C, 1, 1)

    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    def erf(v):
        return np.vectorize(math.erf)(v)

    def body(c):
        if name == "silu":
            return c * sigmoid(c)
        if name in ("gelu_torchscript", "gelu_dynamo"):
            return 0.5 * c * (1 + erf(c / math.sqrt(2)))
        if name == "gelu_tanh_keras":
            return 0.5 * c * (1 + np.tanh(math.sqrt(2 / math.pi) * (c + 0.044715 * c ** 3)))
        if name == "glu":
            return c[:, :2] * sigmoid(c[:, 2:])
        if name == "layernorm_decomposed":
            d = c - c.mean(axis=1, keepdims=True)
            return d / np.sqrt((d ** 2).mean(axis=1, keepdims=True) + 1e-5) * GAMMA + BETA
        if name == "rmsnorm":
            return c / np.sqrt((c ** 2).mean(axis=1, keepdims=True) + 1e-5) * GAMMA
        if name == "squeeze_excitation":
            e1 = np.maximum(np.einsum("nc,oc->no", c.mean(axis=(2, 3)), SE1[:, :, 0, 0]), 0)
            gate = np.clip(np.einsum("nc,oc->no", e1, SE2[:, :, 0, 0]) / 6 + 0.5, 0, 1)
            return c * gate[:, :, None, None]
        raise KeyError(name)

    def forward(x):
        act = body(conv(x))
        fw = FC_W[:, :act.shape[1]].astype(np.float64)
        return act.mean(axis=(2, 3)) @ fw.T
    return forward


class GradientEverywhere(Composite):
    def rule_for(self, node, category, is_first):
        return rules.Gradient()


def model_gradient(model, x, target):
    explainer = onnx_lrp.Explainer(model)
    compiled = compile_explainer(explainer.graph(x.shape[1:]), GradientEverywhere(), seed_times_output=False)
    session = make_session(compiled.model, [CPU])
    return session.run([RELEVANCE], {"x": x, TARGET: np.full(len(x), target, np.int64)})[0]


@pytest.mark.parametrize("name", SMOOTH)
def test_gradient_through_patterns_is_exact(name):
    """The product rule VJP (both operands) makes the Gradient-everywhere sweep the true gradient."""
    forward = _numpy_forward(name)
    x = X[:1].astype(np.float64)
    target = 1
    np.testing.assert_allclose(forward(x), onnx_lrp.Explainer(build(name)).explain(X[:1]).output, rtol=1e-4,
                               atol=1e-5)
    grad = model_gradient(build(name), X[:1], target)[0]
    h = 1e-6
    fd = np.zeros(x.shape[1:])
    for index in np.ndindex(*x.shape[1:]):
        step = np.zeros_like(x)
        step[(0, *index)] = h
        fd[index] = (forward(x + step)[0, target] - forward(x - step)[0, target]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-3, atol=1e-4 * np.abs(fd).max())


def test_product_without_a_recognisable_signal_asks_for_a_rule():
    """Two equally shaped branches multiplied: no operand is a gate; Pass says which rule to name."""
    body = [node("Relu", ["c"], "r"), node("Abs", ["c"], "a0"), node("Conv", ["a0", "pw"], "p"),
            node("Mul", ["r", "p"], "act")]
    model = model_of(body, {"pw": (RNG.standard_normal((C, C, 1, 1)) * 0.5).astype(np.float32)})
    with pytest.raises(CompositeError, match=r"name_map=\{'act': onnx_lrp.rules.Uniform\(\)\}"):
        onnx_lrp.Explainer(model).explain(X)
    result = onnx_lrp.Explainer(model, name_map={"act": rules.Uniform()}).explain(X, keep_layers=True)
    np.testing.assert_allclose(result.layers["r"], result.layers["act"] / 2, rtol=1e-5, atol=1e-7)


def test_unsupported_op_names_node_type_and_the_override_that_proceeds():
    body = [node("Relu", ["c"], "r"), helper.make_node("Hardmax", ["r"], ["act"], name="odd", axis=1)]
    model = model_of(body, {})
    with pytest.raises(UnsupportedOp) as error:
        onnx_lrp.Explainer(model).explain(X)
    message = str(error.value)
    assert "'odd'" in message and "'Hardmax'" in message
    assert "onnx_lrp.Explainer(model, name_map={'odd': onnx_lrp.rules.Pass()})" in message
    result = onnx_lrp.Explainer(model, name_map={"odd": rules.Pass()}).explain(X)
    assert np.isfinite(result.relevance).all() and np.any(result.relevance)
    by_type = onnx_lrp.Explainer(model, type_map={"Hardmax": rules.Pass()}).explain(X)
    np.testing.assert_array_equal(by_type.relevance, result.relevance)


def runtime_gather_model():
    """x (N, 3, H, W) -> Conv -> GAP -> Reshape(-1) -> Gather(indices from Range(N)), as torch.export
    writes the ``as_strided`` view after ConvNeXt's average pool."""
    nodes = [node("Conv", ["x", "cw", "cb"], "c", pads=[1, 1, 1, 1]), node("GlobalAveragePool", ["c"], "gap"),
             node("Reshape", ["gap", "minus1"], "flat"),
             node("Shape", ["x"], "xs", start=0, end=1), node("Squeeze", ["xs"], "n"),
             node("Range", ["zero", "n", "one"], "rows"), node("Mul", ["rows", "cc"], "row0"),
             node("Unsqueeze", ["row0", "ax1"], "row0u"), node("Add", ["row0u", "cols"], "index"),
             node("Gather", ["flat", "index"], "picked", axis=0), node("Gemm", ["picked", "fw"], "logits", transB=1)]
    consts = {"cw": CONV_W, "cb": CONV_B, "fw": FC_W, "minus1": np.asarray([-1], np.int64),
              "zero": np.asarray(0, np.int64), "one": np.asarray(1, np.int64), "cc": np.asarray(C, np.int64),
              "ax1": np.asarray([1], np.int64), "cols": np.arange(C, dtype=np.int64)[::-1].copy()}
    graph = helper.make_graph(nodes, "gather", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, H, W])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_gather_with_run_time_indices():
    model = runtime_gather_model()
    explainer = onnx_lrp.Explainer(model)
    steps = steps_of(explainer, X)
    assert type(steps["picked"].handler).__name__ == "RuntimeGatherHandler"
    # the channels are reversed by the gather: the gradient is the plain model's, re-indexed
    grad = model_gradient(model, X, 2)
    plain = model_of([node("Identity", ["c"], "act")], {"fw": FC_W[:, ::-1].copy()})
    np.testing.assert_allclose(grad, model_gradient(plain, X, 2), rtol=1e-5, atol=1e-7)
    result = explainer.explain(X)
    assert np.isfinite(result.relevance).all()
