"""Hostile models: a clear OnnxLrpError naming the tensor or node, before memory or the stack runs out.

External data outside the model's folder (directly, absolute, through a symlinked file or folder),
tensors of 10¹² elements (declared, folded from constants, computed from the data), initializers
whose bytes do not match their dims, subgraphs nested 1,000 deep, and a 10,000-node chain.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from chain_models import chain
from model_builders import make_model, vi
from onnx import TensorProto, helper, numpy_helper

from onnx_lrp import Explainer
from onnx_lrp.errors import ModelLoadError, TensorTooLarge
from onnx_lrp.graph import load_model
from onnx_lrp.screen import MAX_SUBGRAPH_DEPTH

HUGE = [10 ** 6, 10 ** 6]  # 10¹² elements: 4 TB of float32


def _scaled(weight: onnx.TensorProto, out_shape=(1, 3)) -> onnx.ModelProto:
    """y = x * W, W an initializer the caller builds (possibly external or malformed)."""
    graph = helper.make_graph([helper.make_node("Mul", ["x", "W"], ["y"])], "hostile", [vi("x", [1, 3])],
                              [vi("y", list(out_shape))], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _external(location: str, dims=(3,)) -> onnx.TensorProto:
    tensor = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=list(dims))
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return tensor


@pytest.fixture
def folders(tmp_path):
    """(model folder, a folder beside it holding secret.bin)."""
    inside, outside = tmp_path / "model", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    np.ones(3, np.float32).tofile(outside / "secret.bin")
    return inside, outside


@pytest.mark.parametrize("how", ["parent", "absolute", "file_link", "folder_link"])
def test_external_data_outside_the_model_folder_is_refused(folders, how):
    inside, outside = folders
    if how == "file_link":
        os.symlink(outside / "secret.bin", inside / "weights.bin")
    if how == "folder_link":
        os.symlink(outside, inside / "sub")
    location = {"parent": "../outside/secret.bin", "absolute": str(outside / "secret.bin"),
                "file_link": "weights.bin", "folder_link": "sub/secret.bin"}[how]
    path = inside / "model.onnx"
    onnx.save(_scaled(_external(location)), str(path))
    with pytest.raises(ModelLoadError, match=r"external data of .*\bW\b"):
        Explainer(str(path))


def test_external_data_inside_the_folder_loads(folders):
    inside, _ = folders
    np.full(3, 2.0, np.float32).tofile(inside / "weights.bin")
    path = inside / "model.onnx"
    onnx.save(_scaled(_external("weights.bin")), str(path))
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(Explainer(str(path)).explain(x).output, 2 * x)


def test_declared_external_tensor_of_a_trillion_elements_is_refused_before_reading(folders):
    inside, _ = folders
    path = inside / "model.onnx"  # no data file at all: refused on the declared dims alone
    onnx.save(_scaled(_external("huge.bin", HUGE)), str(path))
    with pytest.raises(TensorTooLarge, match=r"initializer 'W'.*1,000,000,000,000 elements"):
        Explainer(str(path))


def test_declared_initializer_of_a_trillion_elements_is_refused():
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=HUGE, raw_data=b"\0" * 4)
    with pytest.raises(TensorTooLarge, match="initializer 'W'"):
        Explainer(_scaled(weight))


def test_initializer_whose_bytes_do_not_match_its_dims_is_refused():
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[3], raw_data=b"\0" * 8)
    with pytest.raises(ModelLoadError, match=r"initializer 'W'.*stores 8 bytes"):
        Explainer(_scaled(weight))


def test_constant_folded_to_a_trillion_elements_is_refused():
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"], name="make_big"),
             helper.make_node("Mul", ["x", "big"], ["y"], name="scale")]
    model = make_model(nodes, [vi("x", [1, 3])], [vi("y", HUGE + [3])],
                       {"shape": np.array(HUGE + [3], np.int64)})
    with pytest.raises(TensorTooLarge, match=r"tensor 'big' computed by node 'make_big' \(ConstantOfShape\)"):
        Explainer(model)


def test_tensor_computed_from_the_data_of_a_trillion_elements_is_refused_before_running():
    nodes = [helper.make_node("Expand", ["x", "shape"], ["y"], name="blow_up")]
    model = make_model(nodes, [vi("x", [1, 3])], [vi("y", HUGE + [3])], {"shape": np.array(HUGE + [3], np.int64)})
    explainer = Explainer(model)
    with pytest.raises(TensorTooLarge, match=r"tensor 'y' \(output of node 'blow_up', Expand\) at input shape"):
        explainer.explain(np.ones((1, 3), np.float32))


def _nested_ifs(depth: int) -> onnx.ModelProto:
    """If inside If ``depth`` deep (each else-branch a leaf), built in place: protobuf's own
    copies refuse messages this deep."""
    model = make_model([], [vi("x", [1, 3]), vi("c", [], TensorProto.BOOL)], [vi("o0", [1, 3])], check=False)
    graph = model.graph
    for d in range(depth):
        node = graph.node.add(name=f"if{d}", op_type="If", input=["c"], output=[f"o{d}"])
        then, other = node.attribute.add(), node.attribute.add()
        then.name, then.type = "then_branch", onnx.AttributeProto.GRAPH
        other.name, other.type = "else_branch", onnx.AttributeProto.GRAPH
        other.g.CopyFrom(helper.make_graph([helper.make_node("Relu", ["x"], [f"e{d}"])], f"else{d}", [],
                                           [vi(f"e{d}", [1, 3])]))
        graph = then.g
        graph.name = f"then{d}"
        graph.output.append(vi(f"o{d + 1}", [1, 3]))
    graph.node.append(helper.make_node("Relu", ["x"], [f"o{depth}"], name="leaf"))
    return model


def test_subgraphs_nested_a_thousand_deep_are_refused_naming_the_node():
    with pytest.raises(ModelLoadError, match=f"node 'if{MAX_SUBGRAPH_DEPTH}' \\(If\\).*nests subgraphs"):
        load_model(_nested_ifs(1000))


def test_a_file_nested_too_deep_for_protobuf_gets_a_clear_error(tmp_path):
    path = tmp_path / "deep.onnx"
    path.write_bytes(_nested_ifs(1000).SerializeToString())
    with pytest.raises(ModelLoadError, match="subgraphs inside subgraphs"):
        Explainer(str(path))


def test_nesting_within_the_limit_loads():
    model, _ = load_model(_nested_ifs(MAX_SUBGRAPH_DEPTH))
    assert model.graph.node[0].op_type == "If"


def test_a_ten_thousand_node_chain_is_explained():
    """Canonization collapses 9,999 Dropouts after a Relu (this took minutes when every pass
    rescanned the graph per node; tests/test_scaling.py guards the growth)."""
    explainer = Explainer(chain("dropout", 10_000), composite="epsilon", epsilon=0.0)
    assert len(explainer.model.graph.node) == 1
    x = np.array([[0.5, -1.0, 2.0, 0.25]], np.float32)
    result = explainer.explain(x)
    np.testing.assert_array_equal(result.output, np.maximum(x, 0))
    np.testing.assert_allclose(result.relevance, [[0, 0, 2.0, 0]])
