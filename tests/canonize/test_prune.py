"""prune_to_output: only the nodes the explained output needs are kept."""
from __future__ import annotations

import numpy as np
from onnx import helper

from canon_helpers import INT64, assert_same_outputs, init_names, make_model, op_counts, randn, run, vi
from onnx_lrp.canonize import prune_to_output


def _classifier(named: bool = True):
    """x -> Gemm -> logits -> Softmax -> probabilities; logits -> ArgMax -> label (int64)."""
    r = np.random.default_rng(3)
    nm = (lambda n: {"name": n}) if named else (lambda n: {})
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["logits"], transB=1, **nm("gemm")),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1, **nm("softmax")),
        helper.make_node("ArgMax", ["logits"], ["label0"], axis=1, keepdims=0, **nm("argmax")),
        helper.make_node("Add", ["label0", "offset"], ["label"], **nm("offset_add")),
    ]
    inits = {"w": r.standard_normal((3, 4)).astype(np.float32), "b": r.standard_normal(3).astype(np.float32),
             "offset": np.array(10, np.int64)}
    return make_model(nodes, [vi("x", ["N", 4])], [vi("label", ["N"], INT64), vi("probabilities", ["N", 3])],
                      inits)


def test_label_branch_is_dropped():
    model = _classifier()
    pruned = prune_to_output(model, "probabilities")
    assert op_counts(pruned) == {"Gemm": 1, "Softmax": 1}
    assert [o.name for o in pruned.graph.output] == ["probabilities"]
    assert "offset" not in init_names(pruned), "initializers of the dropped branch must go too"
    assert init_names(pruned) == {"w", "b"}
    assert_same_outputs(model, pruned, {"x": randn((5, 4))}, outputs=["probabilities"])


def test_label_branch_is_dropped_in_an_unnamed_graph():
    model = _classifier(named=False)
    pruned = prune_to_output(model, "probabilities")
    assert op_counts(pruned) == {"Gemm": 1, "Softmax": 1}
    assert_same_outputs(model, pruned, {"x": randn((5, 4))}, outputs=["probabilities"])


def test_pruning_to_the_label_keeps_its_whole_chain():
    model = _classifier()
    pruned = prune_to_output(model, "label")
    assert op_counts(pruned) == {"Gemm": 1, "ArgMax": 1, "Add": 1}
    assert_same_outputs(model, pruned, {"x": randn((5, 4))}, outputs=["label"])


def test_input_only_used_by_the_dropped_branch_is_removed():
    """Otherwise every session of the pruned model would demand a value for it."""
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"], name="relu"),
         helper.make_node("Neg", ["aux"], ["z"], name="neg")],
        [vi("x", [2, 3]), vi("aux", [2, 3])], [vi("y", [2, 3]), vi("z", [2, 3])])
    pruned = prune_to_output(model, "y")
    assert op_counts(pruned) == {"Relu": 1}
    assert [i.name for i in pruned.graph.input] == ["x"]
    out = run(pruned, {"x": randn((2, 3))})
    np.testing.assert_array_equal(out["y"], np.maximum(randn((2, 3)), 0))


def test_outer_scope_tensor_read_by_a_subgraph_is_kept():
    """An If branch reading a tensor of the main graph needs that tensor's producer."""
    then_graph = helper.make_graph([helper.make_node("Neg", ["h"], ["t_out"], name="then_neg")], "then",
                                   [], [vi("t_out", [2, 3])])
    else_graph = helper.make_graph([helper.make_node("Abs", ["h"], ["e_out"], name="else_abs")], "else",
                                   [], [vi("e_out", [2, 3])])
    model = make_model(
        [helper.make_node("Relu", ["x"], ["h"], name="relu"),
         helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_graph, else_branch=else_graph)],
        [vi("x", [2, 3])], [vi("y", [2, 3])], {"cond": np.array(True)})
    pruned = prune_to_output(model, "y")
    assert op_counts(pruned) == {"Relu": 1, "If": 1}
    assert_same_outputs(model, pruned, {"x": randn((2, 3))})
