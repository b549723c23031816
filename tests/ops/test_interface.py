"""The handler interface: handlers found by importing the package, registered by decorator, the
facts they declare (data input, sign behaviour, signal) and the per-node memo on the graph."""
from __future__ import annotations

import dataclasses
import pkgutil
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from onnx_lrp import ops
from onnx_lrp.context import SharedTensors
from onnx_lrp.ops import base, registry

from .harness import node_model


def _all_handlers() -> set:
    registry._load_families()
    return set(registry._HANDLERS.values()) | {h for _, _, h in registry._PATTERNS}


def test_every_module_of_the_package_is_imported_on_first_lookup():
    registry._load_families()
    for module in pkgutil.iter_modules(ops.__path__):
        assert f"onnx_lrp.ops.{module.name}" in sys.modules, module.name


def test_handles_registers_a_class_for_op_types_and_patterns():
    @registry.handles("Fancy", domain="org.example")
    class Fancy(base.Handler):
        pass

    @registry.handles("Relu", when=lambda node, g: node.name == "special")
    class SpecialRelu(base.Handler):
        pass

    try:
        node = helper.make_node("Fancy", ["x"], ["y"], domain="org.example", name="f")
        assert type(registry.lookup(node)) is Fancy
        assert type(registry.lookup(helper.make_node("Relu", ["x"], ["y"], name="special"), g=object())) \
            is SpecialRelu
        assert type(registry.lookup(helper.make_node("Relu", ["x"], ["y"], name="other"), g=object())) \
            is not SpecialRelu
    finally:
        del registry._HANDLERS[("org.example", "Fancy")]
        registry._PATTERNS[:] = [p for p in registry._PATTERNS if type(p[2]) is not SpecialRelu]


def test_the_data_input_check_lives_in_the_base_class_only():
    for handler in _all_handlers():
        assert type(handler).check_inputs is base.Handler.check_inputs, type(handler).__name__
        assert handler.sign in (None, base.NONNEGATIVE, base.KEEPS_SIGN), type(handler).__name__


def test_a_parameter_computed_from_the_data_is_refused_with_the_handlers_reason():
    nodes = [helper.make_node("Relu", ["x"], ["slope"], name="slope"),
             helper.make_node("PRelu", ["x", "slope"], ["y"], name="prelu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    try:
        onnx_lrp.Explainer(model).explain(np.ones((1, 4), np.float32))
    except onnx_lrp.UnsupportedOp as exc:
        assert "'prelu'" in str(exc) and "depend on the data" in str(exc)
    else:
        raise AssertionError("a data-dependent PRelu slope was accepted")


def _sign_model():
    """x → Relu → MaxPool → Pad(-1), Sigmoid, Tanh, Concats of them: which tensors are provably >= 0."""
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    minus = numpy_helper.from_array(np.array(-1.0, np.float32), "minus")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["m"], kernel_shape=[1, 1], name="pool"),
             helper.make_node("Pad", ["m", "pads", "minus"], ["p"], name="pad"),
             helper.make_node("Sigmoid", ["x"], ["s"], name="sigmoid"),
             helper.make_node("Tanh", ["x"], ["t"], name="tanh"),
             helper.make_node("Concat", ["m", "s"], ["c"], axis=1, name="cat_pos"),
             helper.make_node("Concat", ["m", "t"], ["c2"], axis=1, name="cat_mixed")]
    for t in ("p", "c", "c2"):
        nodes.append(helper.make_node("Flatten", [t], [f"f{t}"], name=f"flat_{t}"))
    nodes.append(helper.make_node("Concat", ["fp", "fc", "fc2"], ["y"], axis=1, name="out"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 122])], [pads, minus])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_sign_facts_come_from_the_handlers():
    g = onnx_lrp.Explainer(_sign_model()).graph((2, 3, 3))
    shared = SharedTensors()
    facts = {t: shared.nonnegative(g, t) for t in ("x", "r", "m", "p", "s", "t", "c", "c2", "fc", "fc2")}
    assert facts == {"x": False, "r": True, "m": True, "p": False, "s": True, "t": False, "c": True, "c2": False,
                     "fc": True, "fc2": False}


def test_per_node_facts_live_in_the_graph_memo():
    sample = (2, 3, 3)
    model = node_model("Resize", sample, ["x", np.zeros(0, np.float32), np.array([1, 1, 2, 2], np.float32)],
                       mode="linear")
    explainer = onnx_lrp.Explainer(model, composite="epsilon")
    explainer.compile(sample)
    g = explainer.graph(sample)
    assert set(vars(g)) <= {f.name for f in dataclasses.fields(g)}, "a fact was stashed outside the memo"
    node = g.model.graph.node[0]
    assert ("resize matrices", node.name) in g._memo
    assert g.memo("resize matrices", node, lambda: None) is g._memo[("resize matrices", node.name)]


def test_signal_is_declared_by_every_handler():
    one = helper.make_node("Relu", ["x"], ["y"], name="r")

    class G:  # the base implementation asks only which inputs are relevant
        relevant = {"x"}

        def relevant_inputs(self, node):
            return [0]

    assert base.Handler().signal(one, G()) == 0
    two = helper.make_node("Add", ["x", "z"], ["y"], name="a")
    G.relevant_inputs = lambda self, node: [0, 1]
    assert base.Handler().signal(two, G()) is None


def test_weighted_layers_declare_their_channel_layout():
    """What the canonizers fold a per-channel scale with: out_channels and scale_output_channels
    against the layer run on the scaled weight (y_c scaled by s_c) in numpy."""
    rng = np.random.default_rng(0)
    cases = {
        "Conv": (helper.make_node("Conv", ["x", "w"], ["y"]), rng.standard_normal((4, 3, 2, 2)), 4, 0),
        "ConvTranspose_group": (helper.make_node("ConvTranspose", ["x", "w"], ["y"], group=2),
                                rng.standard_normal((4, 3, 2, 2)), 6, None),
        "Gemm_transB": (helper.make_node("Gemm", ["x", "w"], ["y"], transB=1), rng.standard_normal((5, 3)), 5, 0),
        "Gemm": (helper.make_node("Gemm", ["x", "w"], ["y"]), rng.standard_normal((3, 5)), 5, 1),
        "MatMul": (helper.make_node("MatMul", ["x", "w"], ["y"]), rng.standard_normal((3, 5)), 5, 1),
    }
    for name, (node, weight, channels, axis) in cases.items():
        handler = registry.lookup(node)
        assert handler.weight_input == 1 and handler.out_channels(node, weight) == channels, name
        scale = np.arange(1.0, channels + 1)
        scaled = handler.scale_output_channels(node, weight, scale)
        if axis is not None:
            expected = np.moveaxis(np.moveaxis(weight, axis, -1) * scale, -1, axis)
        else:  # ConvTranspose (C_in, C_out / group, ...): output channel g·per_group + m is w[g-th block, :, m]
            per_group = weight.shape[1]
            expected = weight.copy()
            for c in range(channels):
                g, m = divmod(c, per_group)
                expected[g * 2:(g + 1) * 2, m] *= scale[c]
        np.testing.assert_allclose(scaled, expected, err_msg=name)
    assert registry.lookup(helper.make_node("MatMul", ["x", "w"], ["y"])).bias_input is None
    assert registry.lookup(helper.make_node("Relu", ["x"], ["y"])).weight_input is None
