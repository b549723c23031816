"""remove_identities: Identity and inference Dropout nodes are removed, graph outputs keep their names."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from canon_helpers import assert_same_outputs, make_model, op_counts, randn, run, vi
from onnx_lrp.canonize import remove_identities


def _x():
    return {"x": randn((2, 5))}


def test_identity_in_the_middle_is_removed():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["a"], name="relu"),
         helper.make_node("Identity", ["a"], ["b"], name="id"),
         helper.make_node("Neg", ["b"], ["y"], name="neg")],
        [vi("x", [2, 5])], [vi("y", [2, 5])])
    out = remove_identities(model)
    assert op_counts(out) == {"Relu": 1, "Neg": 1}
    assert_same_outputs(model, out, _x())


def test_dropout_is_removed():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["a"], name="relu"),
         helper.make_node("Dropout", ["a", "ratio"], ["b"], name="drop"),
         helper.make_node("Neg", ["b"], ["y"], name="neg")],
        [vi("x", [2, 5])], [vi("y", [2, 5])], {"ratio": np.array(0.5, np.float32)})
    out = remove_identities(model)
    assert op_counts(out) == {"Relu": 1, "Neg": 1}
    assert_same_outputs(model, out, _x())


def test_dropout_with_used_mask_is_kept():
    model = make_model(
        [helper.make_node("Dropout", ["x"], ["a", "mask"], name="drop"),
         helper.make_node("Cast", ["mask"], ["m"], name="cast", to=TensorProto.FLOAT),
         helper.make_node("Mul", ["a", "m"], ["y"], name="mul")],
        [vi("x", [2, 5])], [vi("y", [2, 5])])
    out = remove_identities(model)
    assert op_counts(out)["Dropout"] == 1
    assert_same_outputs(model, out, _x())


def test_identity_producing_the_graph_output_keeps_the_output_name():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["a"], name="relu"),
         helper.make_node("Identity", ["a"], ["y"], name="id")],
        [vi("x", [2, 5])], [vi("y", [2, 5])])
    out = remove_identities(model)
    assert op_counts(out) == {"Relu": 1}
    assert [o.name for o in out.graph.output] == ["y"]
    assert out.graph.node[0].output[0] == "y"
    assert_same_outputs(model, out, _x())


def test_identity_to_output_whose_source_feeds_other_nodes():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["a"], name="relu"),
         helper.make_node("Identity", ["a"], ["y"], name="id"),
         helper.make_node("Neg", ["a"], ["z"], name="neg")],
        [vi("x", [2, 5])], [vi("y", [2, 5]), vi("z", [2, 5])])
    out = remove_identities(model)
    assert op_counts(out) == {"Relu": 1, "Neg": 1}
    assert_same_outputs(model, out, _x())


def test_identity_copying_one_graph_output_to_another():
    """torch exports ``return y, y`` as an Identity between two graph outputs; both must survive."""
    model = make_model(
        [helper.make_node("Relu", ["x"], ["a"], name="relu"),
         helper.make_node("Identity", ["a"], ["a_copy"], name="id")],
        [vi("x", [2, 5])], [vi("a", [2, 5]), vi("a_copy", [2, 5])])
    out = remove_identities(model)
    assert_same_outputs(model, out, _x())
    assert [o.name for o in out.graph.output] == ["a", "a_copy"]


def test_identity_reading_the_graph_input():
    model = make_model(
        [helper.make_node("Identity", ["x"], ["a"], name="id"),
         helper.make_node("Relu", ["a"], ["y"], name="relu")],
        [vi("x", [2, 5])], [vi("y", [2, 5])])
    out = remove_identities(model)
    assert op_counts(out) == {"Relu": 1}
    assert out.graph.node[0].input[0] == "x"
    assert_same_outputs(model, out, _x())


def test_identity_from_graph_input_to_graph_output_is_kept():
    model = make_model(
        [helper.make_node("Identity", ["x"], ["y"], name="id")],
        [vi("x", [2, 5])], [vi("y", [2, 5])])
    out = remove_identities(model)
    assert op_counts(out) == {"Identity": 1}
    assert_same_outputs(model, out, _x())


def test_chain_of_identities_and_dropouts_ending_at_the_output():
    model = make_model(
        [helper.make_node("Identity", ["x"], ["a"], name="id0"),
         helper.make_node("Relu", ["a"], ["b"], name="relu"),
         helper.make_node("Dropout", ["b"], ["c"], name="drop"),
         helper.make_node("Identity", ["c"], ["d"], name="id1"),
         helper.make_node("Identity", ["d"], ["y"], name="id2")],
        [vi("x", [2, 5])], [vi("y", [2, 5])])
    out = remove_identities(model)
    assert op_counts(out) == {"Relu": 1}
    assert out.graph.node[0].input[0] == "x" and out.graph.node[0].output[0] == "y"
    assert_same_outputs(model, out, _x())


def test_unnamed_identity_removal_keeps_other_unnamed_nodes():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["a"]),
         helper.make_node("Identity", ["a"], ["b"]),
         helper.make_node("Neg", ["b"], ["y"])],
        [vi("x", [2, 5])], [vi("y", [2, 5])])
    out = remove_identities(model)
    assert op_counts(out) == {"Relu": 1, "Neg": 1}
    assert_same_outputs(model, out, _x())


def test_custom_domain_identity_is_not_touched():
    node = helper.make_node("Identity", ["x"], ["y"], name="id", domain="com.example")
    graph = helper.make_graph([node], "g", [vi("x", [2, 5])], [vi("y", [2, 5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    out = remove_identities(model)
    assert op_counts(out) == {"Identity": 1}
    assert out.graph.node[0].domain == "com.example"


def test_input_model_is_not_modified():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["a"], name="relu"),
         helper.make_node("Identity", ["a"], ["y"], name="id")],
        [vi("x", [2, 5])], [vi("y", [2, 5])])
    before = model.SerializeToString()
    remove_identities(model)
    assert model.SerializeToString() == before
    assert run(model, _x())["y"].shape == (2, 5)
    onnx.checker.check_model(model)
