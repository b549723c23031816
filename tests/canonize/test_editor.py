"""GraphEditor: the index answers as a fresh scan of the edited graph would, after every edit."""
from __future__ import annotations

import numpy as np
import onnx
from canon_helpers import make_model, vi
from onnx import helper

from onnx_lrp.canonize.editor import GraphEditor, NameAllocator


def _model():
    """x -> Relu(a) -> Mul(a, a) -> b -> Add(b, c) -> y; c an initializer."""
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("Mul", ["a", "a"], ["b"], name="mul"),
             helper.make_node("Add", ["b", "c"], ["y"], name="add")]
    return make_model(nodes, [vi("x", [1, 3])], [vi("y", [1, 3])], {"c": np.ones(3, np.float32)})


def _scan(edit: GraphEditor):
    """Producer and reader maps computed from scratch over the editor's current nodes."""
    producer, readers = {}, {}
    for node in edit.nodes():
        for t in node.output:
            producer[t] = node.name
        for t in node.input:
            readers.setdefault(t, []).append(node.name)
    return producer, readers


def _assert_index_matches_scan(edit: GraphEditor):
    producer, readers = _scan(edit)
    names = set(producer) | set(readers)
    for t in names:
        got = edit.producer(t)
        assert (got.name if got is not None else None) == producer.get(t), t
        assert sorted(n.name for n in edit.consumers(t)) == sorted(readers.get(t, [])), t


def test_queries_on_a_fresh_graph():
    edit = GraphEditor(_model())
    assert edit.producer("a").name == "relu"
    assert edit.producer("x") is None and edit.producer("c") is None
    assert [n.name for n in edit.consumers("a")] == ["mul", "mul"]  # once per input slot
    assert edit.is_output("y") and not edit.is_output("b")
    assert "x" in edit.inputs
    np.testing.assert_array_equal(edit.const("c"), np.ones(3))
    assert edit.const("a") is None
    _assert_index_matches_scan(edit)


def test_rename_uses_moves_readers_and_graph_outputs():
    edit = GraphEditor(_model())
    edit.rename_uses("a", "x")
    assert list(edit.producer("b").input) == ["x", "x"]
    assert edit.consumers("a") == []
    edit.rename_uses("y", "z")
    assert edit.is_output("z") and not edit.is_output("y")
    _assert_index_matches_scan(edit)


def test_rename_tensor_renames_producer_readers_and_initializer():
    edit = GraphEditor(_model())
    edit.rename_tensor("a", "a2")
    assert edit.producer("a2").name == "relu" and edit.producer("a") is None
    edit.rename_tensor("c", "c2")
    np.testing.assert_array_equal(edit.const("c2"), np.ones(3))
    assert edit.const("c") is None
    _assert_index_matches_scan(edit)
    model = edit.commit()
    assert [t.name for t in model.graph.initializer] == ["c2"]
    onnx.checker.check_model(model)


def test_set_input_and_set_output_keep_the_index():
    edit = GraphEditor(_model())
    add = edit.producer("y")
    edit.set_input(add, 1, "a")
    assert sorted(n.name for n in edit.consumers("a")) == ["add", "mul", "mul"]
    edit.set_input(add, 2, "c")  # appends
    assert list(add.input) == ["b", "a", "c"]
    relu = edit.producer("a")
    edit.set_output(relu, 0, "r")
    assert edit.producer("a") is None and edit.producer("r") is relu
    _assert_index_matches_scan(edit)


def test_remove_and_insert_are_written_once_by_commit():
    model = _model()
    edit = GraphEditor(model)
    mul = edit.producer("b")
    edit.remove(mul)
    new = helper.make_node("Neg", ["a"], ["b"], name="neg")
    edit.insert_before(edit.producer("y"), [new])
    assert [n.name for n in model.graph.node] == ["relu", "mul", "add"]  # not written yet
    assert [n.name for n in edit.nodes()] == ["relu", "neg", "add"]
    assert edit.producer("b").name == "neg"
    _assert_index_matches_scan(edit)
    assert [n.name for n in edit.commit().graph.node] == ["relu", "neg", "add"]


def test_fresh_names_avoid_every_tensor_name_and_each_other():
    nodes = [helper.make_node("Relu", ["x"], ["t"], name="relu"),
             helper.make_node("Relu", ["t"], ["t_1"], name="relu2")]
    edit = GraphEditor(make_model(nodes, [vi("x", [1])], [vi("t_1", [1])]))
    assert edit.fresh("t") == "t_2"
    assert edit.fresh("t") == "t_3"
    assert edit.fresh("x") == "x_1"
    edit.set_const("t_4", np.zeros(1, np.float32))
    assert edit.fresh("t") == "t_5"


def test_fresh_names_avoid_names_inside_subgraphs():
    branch = helper.make_graph([helper.make_node("Relu", ["x"], ["inner"])], "b", [], [vi("inner", [1])])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)
    model = make_model([node], [vi("x", [1]), vi("cond", [], onnx.TensorProto.BOOL)], [vi("y", [1])])
    assert GraphEditor(model).fresh("inner") == "inner_1"


def test_name_allocator_counts_on_from_the_last_suffix():
    names = NameAllocator({"a", "a_1", "a_3"})
    assert [names.fresh("a") for _ in range(3)] == ["a_2", "a_4", "a_5"]
    assert names.fresh("b") == "b"
    assert "a_4" in names


def _reads_inside_if(first: onnx.NodeProto, read: str, inits: dict | None = None) -> onnx.ModelProto:
    """``first`` then an If whose branches read ``read`` from the enclosing scope, and a Relu of it."""
    then = helper.make_graph([helper.make_node("Relu", [read], ["t"])], "then", [], [vi("t", [1, 3])])
    other = helper.make_graph([helper.make_node("Neg", [read], ["e"])], "else", [], [vi("e", [1, 3])])
    nodes = [first, helper.make_node("Relu", [read], ["r"], name="relu"),
             helper.make_node("If", ["c"], ["y"], name="if", then_branch=then, else_branch=other)]
    return make_model(nodes, [vi("x", [1, 3]), vi("c", [], onnx.TensorProto.BOOL)], [vi("y", [1, 3]), vi("r", [1, 3])],
                      inits)


def test_a_tensor_read_inside_a_subgraph_counts_as_read_and_is_not_renamed():
    edit = GraphEditor(_reads_inside_if(helper.make_node("Identity", ["x"], ["a"], name="id"), "a"))
    assert sorted(n.name for n in edit.consumers("a")) == ["if", "relu"]
    assert edit.read_in_subgraph("a") and not edit.read_in_subgraph("x")
    try:
        edit.rename_uses("a", "x")
    except ValueError:
        pass
    else:
        raise AssertionError("renaming a tensor a subgraph reads must fail")
    edit.remove(edit.producer("y"))
    assert not edit.read_in_subgraph("a")


def test_identity_whose_output_a_subgraph_reads_is_kept():
    from onnx_lrp.canonize import remove_identities
    model = _reads_inside_if(helper.make_node("Identity", ["x"], ["a"], name="id"), "a")
    out = remove_identities(model)
    assert [n.op_type for n in out.graph.node] == ["Identity", "Relu", "If"]
    onnx.checker.check_model(out, full_check=True)


def test_linear_output_a_subgraph_reads_is_not_fused():
    from onnx_lrp.canonize import fuse_bias
    nodes = helper.make_node("Gemm", ["x", "W"], ["a"], name="gemm")
    model = _reads_inside_if(nodes, "a", {"W": np.eye(3, dtype=np.float32)})
    model.graph.node[1].CopyFrom(helper.make_node("Add", ["a", "b"], ["r"], name="add"))
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.ones(3, np.float32), "b"))
    out = fuse_bias(model)
    assert [n.op_type for n in out.graph.node] == ["Gemm", "Add", "If"]
    onnx.checker.check_model(out, full_check=True)
