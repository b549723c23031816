"""Graph layer: loading (paths, ModelProto, external data, old IR and opsets), node naming, data
input choice, integer shape subgraphs and the relevance DAG."""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import onnx
import pytest
from onnx import helper

import onnx_lrp
from model_builders import FLOAT, INT64, cnn, flatten_by_shape, make_model, mlp, randn, run, vi
from onnx_lrp.graph import MIN_OPSET, data_input, load_model, opset_of


def _explain(model, x, **kw):
    return onnx_lrp.Explainer(model, composite="epsilon", **kw).explain(x)


# --- loading ---------------------------------------------------------------------------------

def test_load_from_path_str_and_pathlike(tmp_path):
    model = cnn()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    for src in (str(path), path):
        proto, label = load_model(src)
        assert label == str(path)
        assert [n.op_type for n in proto.graph.node] == [n.op_type for n in model.graph.node]


def test_nodes_written_after_their_consumers_are_sorted():
    """Some tools (onnxruntime's float16 converter) append nodes after the nodes that read them;
    loading restores topological order, and the model explains as its ordered twin does."""
    model = cnn()
    shuffled = onnx.ModelProto()
    shuffled.CopyFrom(model)
    nodes = list(shuffled.graph.node)
    del shuffled.graph.node[:]
    shuffled.graph.node.extend(nodes[1:] + nodes[:1])  # the first node last: everything reads it
    proto, _ = load_model(shuffled)
    assert [n.name for n in proto.graph.node] == [n.name for n in load_model(model)[0].graph.node]
    x = randn((2, 3, 8, 8), 1)
    np.testing.assert_array_equal(_explain(shuffled, x).relevance, _explain(model, x).relevance)


def test_a_cycle_is_still_a_load_error():
    model = cnn()
    cyclic = onnx.ModelProto()
    cyclic.CopyFrom(model)
    first, last = cyclic.graph.node[0], cyclic.graph.node[-1]
    first.input[0] = last.output[0]  # the first node now reads the last node's output
    with pytest.raises(onnx_lrp.ModelLoadError):
        load_model(cyclic)


def test_load_from_modelproto_does_not_modify_it():
    model = cnn()
    before = model.SerializeToString()
    proto, label = load_model(model)
    assert label == "<ModelProto>"
    assert proto is not model
    assert model.SerializeToString() == before


def test_path_and_modelproto_explain_the_same(tmp_path):
    model = cnn()
    onnx.save(model, tmp_path / "m.onnx")
    x = randn((2, 3, 8, 8), 1)
    a, b = _explain(model, x), _explain(tmp_path / "m.onnx", x)
    np.testing.assert_array_equal(a.relevance, b.relevance)


def test_external_data(tmp_path):
    model = cnn()
    path = tmp_path / "ext.onnx"
    # onnx.save converts the proto it is given in place, so give it a copy
    onnx.save(cnn(), path, save_as_external_data=True, all_tensors_to_one_file=True, location="ext.data",
              size_threshold=0)
    assert (tmp_path / "ext.data").stat().st_size > 0
    raw = onnx.load(path, load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in raw.graph.initializer)
    x = randn((2, 3, 8, 8), 2)
    ref = _explain(model, x)
    got = _explain(path, x)
    np.testing.assert_array_equal(got.output, ref.output)
    np.testing.assert_allclose(got.relevance, ref.relevance, rtol=1e-6, atol=1e-7)


def test_external_data_file_missing_is_a_load_error(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save(cnn(), path, save_as_external_data=True, location="ext.data", size_threshold=0)
    (tmp_path / "ext.data").unlink()
    with pytest.raises(onnx_lrp.ModelLoadError, match="ext.onnx"):
        onnx_lrp.Explainer(path)


def test_ir3_model_listing_initializers_as_inputs():
    r = np.random.default_rng(0)
    inits = {"w": r.standard_normal((3, 4)).astype(np.float32), "b": r.standard_normal(3).astype(np.float32)}
    model = make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
                       [vi("x", ["N", 4]), vi("w", [3, 4]), vi("b", [3])], [vi("y", ["N", 3])], inits,
                       opset=8, ir_version=3)
    proto, _ = load_model(model)
    assert [i.name for i in proto.graph.input] == ["x"], "weights are constants, not data inputs"
    assert data_input(proto, "m").name == "x"
    x = randn((2, 4), 3)
    res = _explain(model, x)
    np.testing.assert_allclose(res.output, x @ inits["w"].T + inits["b"], rtol=1e-5, atol=1e-6)
    # one Epsilon dense layer: relevance = x * w[target] * z_t / stab(z_t) minus the bias share
    t = res.target
    z = res.output[np.arange(2), t]
    expected = x * inits["w"][t] * (z / (z + 1e-6 * np.where(z >= 0, 1, -1)))[:, None]
    np.testing.assert_allclose(res.relevance, expected, rtol=1e-4, atol=1e-6)


def _opset11_model():
    """Ops whose signature changed after opset 11: Unsqueeze/Squeeze axes as attributes, Dropout,
    Softmax coercing to 2-D."""
    r = np.random.default_rng(5)
    inits = {"w": r.standard_normal((4, 3, 3, 3)).astype(np.float32), "b": r.standard_normal(4).astype(np.float32),
             "s": r.uniform(0.5, 1.5, 4).astype(np.float32), "o": r.standard_normal(4).astype(np.float32),
             "m": r.standard_normal(4).astype(np.float32), "v": r.uniform(0.5, 2, 4).astype(np.float32),
             "wf": r.standard_normal((5, 4)).astype(np.float32), "bf": r.standard_normal(5).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "o", "m", "v"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Squeeze", ["g"], ["sq"], name="squeeze", axes=[2, 3]),
        helper.make_node("Dropout", ["sq"], ["d"], name="drop", ratio=0.3),
        helper.make_node("Unsqueeze", ["d"], ["u"], name="unsqueeze", axes=[2]),
        helper.make_node("Flatten", ["u"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=1),
    ]
    return make_model(nodes, [vi("x", ["N", 3, 6, 6])], [vi("prob", ["N", 5])], inits, opset=11, ir_version=6)


def _opset13_model():
    """Opset 13: Unsqueeze/Squeeze/ReduceSum axes as inputs, Split with a split input."""
    r = np.random.default_rng(6)
    inits = {"w": r.standard_normal((6, 6)).astype(np.float32), "axes": np.array([1], np.int64),
             "split": np.array([2, 4], np.int64), "wf": r.standard_normal((4, 6)).astype(np.float32)}
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Unsqueeze", ["r", "axes"], ["u"], name="unsqueeze"),
        helper.make_node("Squeeze", ["u", "axes"], ["s"], name="squeeze"),
        helper.make_node("Split", ["s", "split"], ["a", "b"], name="split", axis=1),
        helper.make_node("Concat", ["b", "a"], ["c"], name="concat", axis=1),
        helper.make_node("Gemm", ["c", "wf"], ["y"], name="fc", transB=1),
    ]
    return make_model(nodes, [vi("x", ["N", 6])], [vi("y", ["N", 4])], inits, opset=13, ir_version=7)


@pytest.mark.parametrize("build, shape, out", [(_opset11_model, (3, 3, 6, 6), "prob"),
                                               (_opset13_model, (3, 6), "y")])
def test_old_opset_is_converted_up(build, shape, out):
    model = build()
    proto, _ = load_model(model)
    assert opset_of(proto) == MIN_OPSET
    onnx.checker.check_model(proto)
    x = randn(shape, 7)
    np.testing.assert_allclose(run(proto, {"x": x})[out], run(model, {"x": x})[out], rtol=1e-5, atol=1e-6)
    exp = onnx_lrp.Explainer(model, composite="epsilon")
    res = exp.explain(x)
    assert res.relevance.shape == x.shape and np.isfinite(res.relevance).all()
    assert np.abs(res.relevance).sum() > 0


def test_old_opset_softmax_output_is_stripped_to_logits():
    model = _opset11_model()
    x = randn((2, 3, 6, 6), 8)
    res = onnx_lrp.Explainer(model).explain(x)
    probs = run(model, {"x": x})["prob"]
    assert not np.allclose(res.output, probs)
    e = np.exp(res.output - res.output.max(1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), probs, rtol=1e-5, atol=1e-6)


# --- node names --------------------------------------------------------------------------------

def _names(proto):
    return [n.name for n in proto.graph.node]


def test_unnamed_nodes_get_unique_names():
    model = mlp()
    for n in model.graph.node:
        n.name = ""
    proto, _ = load_model(model)
    names = _names(proto)
    assert all(names) and len(set(names)) == len(names)
    x = randn((3, 6), 9)
    ref = _explain(mlp(), x)
    np.testing.assert_allclose(_explain(model, x).relevance, ref.relevance, rtol=1e-6, atol=1e-7)


def test_duplicate_node_names_are_made_unique_and_kept_names_survive():
    model = mlp()
    for n in model.graph.node:
        n.name = "layer"
    model.graph.node[3].name = "layer_1"  # collides with what a naive renamer would pick
    proto, _ = load_model(model)
    names = _names(proto)
    assert len(set(names)) == len(names)
    assert names[0] == "layer"
    x = randn((3, 6), 10)
    np.testing.assert_allclose(_explain(model, x).relevance, _explain(mlp(), x).relevance, rtol=1e-6, atol=1e-7)


# --- data input --------------------------------------------------------------------------------

def _two_inputs():
    """y = Relu(x) @ w  and  z = Relu(aux): two float inputs, two outputs."""
    w = randn((3, 2), 11)
    return make_model(
        [helper.make_node("Relu", ["x"], ["rx"], name="relu_x"),
         helper.make_node("MatMul", ["rx", "w"], ["y"], name="mm"),
         helper.make_node("Relu", ["aux"], ["z"], name="relu_aux")],
        [vi("x", ["N", 3]), vi("aux", ["N", 3])], [vi("y", ["N", 2]), vi("z", ["N", 3])], {"w": w})


def test_two_float_inputs_need_input_name():
    with pytest.raises(onnx_lrp.InvalidInput) as info:
        onnx_lrp.Explainer(_two_inputs())
    msg = str(info.value)
    assert "'x'" in msg and "'aux'" in msg and "input_name" in msg


def test_input_name_picks_the_input():
    model = _two_inputs()
    exp = onnx_lrp.Explainer(model, input_name="x", output="y", composite="epsilon")
    assert exp.input_name == "x"
    x = randn((2, 3), 12)
    res = exp.explain(x)
    assert res.relevance.shape == (2, 3)
    np.testing.assert_allclose(res.output, np.maximum(x, 0) @ randn((3, 2), 11), rtol=1e-5, atol=1e-6)
    assert (res.relevance[x < 0] == 0).all(), "Relu blocks relevance of negative inputs"


def test_input_name_picks_the_other_input():
    exp = onnx_lrp.Explainer(_two_inputs(), input_name="aux", output="z", composite="epsilon")
    x = randn((2, 3), 13)
    res = exp.explain(x, target=1)
    expected = np.zeros_like(x)
    expected[:, 1] = np.maximum(x[:, 1], 0)
    np.testing.assert_allclose(res.relevance, expected, rtol=1e-5, atol=1e-6)


def test_unknown_input_name_lists_the_inputs():
    with pytest.raises(onnx_lrp.InvalidInput, match=r"'nope'.*\['x', 'aux'\]"):
        onnx_lrp.Explainer(_two_inputs(), input_name="nope")


@pytest.mark.parametrize("aux_shape", [["N", 3], [1, 3]])
def test_output_that_needs_a_second_input_is_named(aux_shape):
    """Explaining y w.r.t. x when y also reads aux: aux would need a value; say so up front,
    whether or not aux's shape is fully known."""
    model = make_model(
        [helper.make_node("Add", ["x", "aux"], ["s"], name="add"),
         helper.make_node("MatMul", ["s", "w"], ["y"], name="mm")],
        [vi("x", ["N", 3]), vi("aux", aux_shape)], [vi("y", ["N", 2])], {"w": randn((3, 2), 14)})
    exp = onnx_lrp.Explainer(model, input_name="x")
    with pytest.raises(onnx_lrp.InvalidInput, match=r"'y'.*also reads.*\['aux'\]"):
        exp.explain(randn((2, 3)))


def test_output_that_does_not_depend_on_the_input():
    exp = onnx_lrp.Explainer(_two_inputs(), input_name="x", output="z")
    with pytest.raises(onnx_lrp.InvalidInput, match=r"'x'.*does not depend|does not depend.*'x'"):
        exp.explain(randn((2, 3)))


def test_integer_input_beside_the_data_input_is_not_a_candidate():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"], name="relu"),
         helper.make_node("Identity", ["ids"], ["ids_out"], name="id")],
        [vi("ids", ["N"], INT64), vi("x", ["N", 3])], [vi("y", ["N", 3]), vi("ids_out", ["N"], INT64)])
    proto, _ = load_model(model)
    assert data_input(proto, "m").name == "x"


# --- integer shape subgraphs ----------------------------------------------------------------------

def test_shape_subgraph_carries_no_relevance():
    exp = onnx_lrp.Explainer(flatten_by_shape(), composite="epsilon")
    g = exp.graph((3, 4, 4))
    shape_ops = {"shape", "gather", "unsqueeze", "concat"}
    assert not shape_ops & set(g.dag.nodes)
    assert {"shape", "batch", "batch1", "target_shape"}.isdisjoint(g.relevant)
    assert {"x", "c", "r", "flat", "y"} <= g.relevant
    assert set(g.dag.nodes) == {"conv", "relu", "reshape", "fc"}
    assert g.dtypes["target_shape"] == np.int64


@pytest.mark.parametrize("n", [1, 2, 5])
def test_shape_subgraph_model_explains_any_batch(n):
    exp = onnx_lrp.Explainer(flatten_by_shape(), composite="epsilon")
    x = randn((5, 3, 4, 4), 15)[:n]
    res = exp.explain(x, target=1)
    assert res.relevance.shape == x.shape
    for i in range(n):
        one = exp.explain(x[i:i + 1], target=1)
        np.testing.assert_allclose(res.relevance[i], one.relevance[0], rtol=1e-5, atol=1e-7)
    assert exp.sessions.programs() == 1, "one compiled graph serves every batch size"


# --- the relevance DAG ------------------------------------------------------------------------------

def _residual(h=5, w=5):
    """x -> conv_a -> relu_a -> conv_b ; add(relu_a, conv_b) -> relu -> gap -> flatten -> fc."""
    r = np.random.default_rng(16)
    inits = {"wa": r.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "wb": r.standard_normal((4, 4, 3, 3)).astype(np.float32),
             "wf": r.standard_normal((2, 4)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["ra"], name="relu_a"),
             helper.make_node("Conv", ["ra", "wb"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["ra", "b"], ["s"], name="add"),
             helper.make_node("Relu", ["s"], ["rs"], name="relu"),
             helper.make_node("GlobalAveragePool", ["rs"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wf"], ["y"], name="fc", transB=1)]
    return make_model(nodes, [vi("x", ["N", 3, h, w])], [vi("y", ["N", 2])], inits)


def test_dag_edges_follow_relevant_tensors():
    g = onnx_lrp.Explainer(_residual()).graph((3, 5, 5))
    edges = {(u, v, d["tensor"]) for u, v, d in g.dag.edges(data=True)}
    assert edges == {("conv_a", "relu_a", "a"), ("relu_a", "conv_b", "ra"), ("relu_a", "add", "ra"),
                     ("conv_b", "add", "b"), ("add", "relu", "s"), ("relu", "gap", "rs"),
                     ("gap", "flatten", "g"), ("flatten", "fc", "f")}
    assert nx.is_directed_acyclic_graph(g.dag)
    order = [n.name for n in g.topo_nodes()]
    assert order.index("conv_b") < order.index("add") and order[0] == "conv_a" and order[-1] == "fc"
    assert g.producer["ra"] == "relu_a"
    assert g.shape("b") == (1, 4, 5, 5) and g.shape("y") == (1, 2)
    assert g.const("wa").shape == (4, 3, 3, 3)


def test_residual_relevance_fans_in_at_the_add():
    exp = onnx_lrp.Explainer(_residual(), composite="epsilon")
    x = randn((2, 3, 5, 5), 17)
    res = exp.explain(x, target=0, keep_layers=True)
    # Norm at the Add and Epsilon everywhere else conserve up to the stabiliser (no biases)
    np.testing.assert_allclose(res.relevance.sum(axis=(1, 2, 3)), res.output[:, 0], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(res.layers["ra"].sum(axis=(1, 2, 3)), res.output[:, 0], rtol=1e-3, atol=1e-5)


def test_graph_is_cached_per_sample_shape():
    exp = onnx_lrp.Explainer(_residual("H", "W"))
    assert exp.graph((3, 5, 5)) is exp.graph((3, 5, 5))
    assert exp.graph((3, 6, 6)) is not exp.graph((3, 5, 5))
    assert exp.graph((3, 6, 6)).shape("b") == (1, 4, 6, 6)


def _if_model(cond_from_data: bool) -> onnx.ModelProto:
    """y = (Relu(x) + If(cond, -Relu(x), |Relu(x)|)) · w; the branches read r from the enclosing
    graph. cond is a constant, or computed from the data (min over samples of argmax(x) == 0)."""
    then_graph = helper.make_graph([helper.make_node("Neg", ["r"], ["t_out"], name="then_neg")], "then",
                                   [], [vi("t_out", ["N", 3])])
    else_graph = helper.make_graph([helper.make_node("Abs", ["r"], ["e_out"], name="else_abs")], "else",
                                   [], [vi("e_out", ["N", 3])])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu")]
    inits = {"w": randn((3, 2), 18)}
    if cond_from_data:
        nodes += [helper.make_node("ArgMax", ["x"], ["top"], name="top", axis=1, keepdims=0),
                  helper.make_node("ReduceMin", ["top"], ["first"], name="first", keepdims=0),
                  helper.make_node("Equal", ["first", "zero"], ["cond"], name="is_zero")]
        inits["zero"] = np.zeros((), np.int64)
    else:
        inits["cond"] = np.array(True)
    nodes += [helper.make_node("If", ["cond"], ["branch"], name="pick", then_branch=then_graph, else_branch=else_graph),
              helper.make_node("Add", ["r", "branch"], ["s"], name="add"),
              helper.make_node("MatMul", ["s", "w"], ["y"], name="mm")]
    return make_model(nodes, [vi("x", ["N", 3])], [vi("y", ["N", 2])], inits)


def test_if_with_a_known_condition_is_inlined():
    """The taken branch replaces the If: here r + (-r) = 0, so the output is 0 and so is the relevance."""
    exp = onnx_lrp.Explainer(_if_model(False), composite="epsilon")
    g = exp.graph((3,))
    assert "If" not in {n.op_type for n in g.model.graph.node}
    assert "Neg" in {n.op_type for n in g.model.graph.node}
    x = randn((2, 3))
    res = exp.explain(x)
    np.testing.assert_allclose(res.output, 0, atol=1e-6)


def test_if_that_depends_on_the_data_is_reported():
    """An If whose condition comes from the data stays; its branches read an activation from the
    enclosing graph, so it is on the data path and must be reported, not skipped."""
    exp = onnx_lrp.Explainer(_if_model(True), composite="epsilon")
    g = exp.graph((3,))
    assert "branch" in g.relevant and "pick" in g.dag.nodes
    with pytest.raises(onnx_lrp.UnsupportedOp, match="'pick'.*'If'"):
        exp.explain(randn((2, 3)))
