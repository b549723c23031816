"""torchvision's VisionTransformer with LXT 2.1's ViT recipe: CP-LRP attention, identity GELU,
detached LayerNorm, zennit Gamma(0.25) on Conv2d and Linear modules. ``nn.MultiheadAttention`` calls
its projections functionally, so module hooks never see them and LXT leaves them at LRP-0: the same
here by ``name_map`` on the dense nodes inside ``self_attention`` (by node name for TorchScript, by
the dynamo exporter's ``pkg.torch.onnx.name_scopes`` metadata otherwise)."""
import pathlib

import numpy as np
import onnx
from onnx import numpy_helper
import pytest

import onnx_lrp
from onnx_lrp import rules

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "attnlrp"


def _attention_projections(model: onnx.ModelProto) -> set[str]:
    def scopes(node):
        return " ".join(p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes")
    return {n.name for n in model.graph.node
            if n.op_type in ("MatMul", "Gemm") and "self_attention" in n.name + scopes(n)}


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_vit_recipe_agrees_with_lxt(exporter):
    ref = np.load(FIXTURES / "vit__cp_lrp_gamma.npz")
    source = onnx.load(FIXTURES / f"vit__{exporter}.onnx")
    gamma = float(ref["gamma"])
    names = _attention_projections(source) & {n.name for n in onnx_lrp.Explainer(source).model.graph.node}
    # exported at a fixed batch of 1, so a run holds one sample: nn.MultiheadAttention's (L, N, E)
    # activations, with q, k, v stacked on axis 0, mix nothing (no batch_axis=None needed)
    explainer = onnx_lrp.Explainer(source, composite="cp_lrp", conv_gamma=gamma, linear_gamma=gamma,
                                   name_map={n: rules.Epsilon(0.0) for n in names})
    result = explainer.explain(ref["inputs"], target=ref["target"])
    r, lxt = result.relevance.astype(np.float64).ravel(), ref["relevance"].astype(np.float64).ravel()
    pearson, max_rel = np.corrcoef(r, lxt)[0, 1], np.abs(r - lxt).max() / np.abs(lxt).max()
    assert pearson >= 0.9999 and max_rel <= 1e-3, (pearson, max_rel)


@pytest.mark.parametrize("exporter,composite", [("torchscript", "cp_lrp"), ("dynamo", "attnlrp")])
def test_vit_explains_from_the_command_line_with_a_heatmap_at_input_resolution(tmp_path, capsys, exporter,
                                                                                composite):
    """Exported at a fixed batch of 1, the ViT explains from the command line as a CNN does, with no
    batch option: a run holds one sample, so moving the batch inside nn.MultiheadAttention mixes
    nothing. The relevance is the API's with batch_axis=None (checked against LXT above), the heatmap
    is at the 32×32 input's resolution."""
    from PIL import Image

    from onnx_lrp import cli

    ref = np.load(FIXTURES / "vit__cp_lrp_gamma.npz")
    model, target = FIXTURES / f"vit__{exporter}.onnx", int(ref["target"][0])
    np.save(tmp_path / "x.npy", ref["inputs"])
    code = cli.main([str(model), str(tmp_path / "x.npy"), "--composite", composite, "--target", str(target),
                     "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    relevance = np.load(tmp_path / "out" / "x.relevance.npy")
    assert relevance.shape == (1, 3, 32, 32) and np.abs(relevance).max() > 0
    expected = onnx_lrp.Explainer(model, composite=composite, batch_axis=None).explain(ref["inputs"], target=target)
    np.testing.assert_allclose(relevance, expected.relevance[0], rtol=1e-5, atol=1e-6 * np.abs(relevance).max())
    assert Image.open(tmp_path / "out" / "x.heatmap.png").size == (32, 32)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_vit_recipe_from_the_command_line_selects_the_projections_by_category(tmp_path, capsys, exporter):
    """The projections are category ``attention_projection`` (dense layers whose output reaches
    Q Kᵀ or A·V, or whose input comes from A·V, through data movement and constant scales only),
    the very nodes the name scopes select above: LXT's recipe from the command line, no node names."""
    from onnx_lrp import cli
    from onnx_lrp.compile import plan_nodes

    ref = np.load(FIXTURES / "vit__cp_lrp_gamma.npz")
    model, gamma = FIXTURES / f"vit__{exporter}.onnx", float(ref["gamma"])
    steps = plan_nodes(onnx_lrp.Explainer(model).graph((3, 32, 32)), onnx_lrp.composites.get("cp_lrp"))
    found = {s.node.name for s in steps if s.category == "attention_projection"}
    dense = {s.node.name for s in steps if s.category in ("dense", "attention_projection")}
    assert found == _attention_projections(onnx.load(model)) & dense  # the scopes also hold Q Kᵀ and A·V
    assert len(found) == 4  # two encoder layers: the fused q, k, v projection and the output projection
    np.save(tmp_path / "x.npy", ref["inputs"])
    code = cli.main([str(model), str(tmp_path / "x.npy"), "--composite", "cp_lrp", "--target", str(int(ref["target"][0])),
                     "--category-rule", f"dense=Gamma({gamma})", "--category-rule", f"convolution=Gamma({gamma})",
                     "--category-rule", "attention_projection=Epsilon(0)", "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    r = np.load(tmp_path / "out" / "x.relevance.npy").astype(np.float64).ravel()
    lxt = ref["relevance"].astype(np.float64).ravel()
    pearson, max_rel = np.corrcoef(r, lxt)[0, 1], np.abs(r - lxt).max() / np.abs(lxt).max()
    assert pearson >= 0.9999 and max_rel <= 1e-3, (pearson, max_rel)


def test_attention_projections_are_the_dense_layers_into_and_out_of_attention():
    """q, k, v projected separately and the output projection after A·V are found; dense layers
    joined by data movement alone are not (and asking one about the other ends)."""
    from onnx_lrp.compile import plan_nodes
    from test_batch_axes import L, E, separate_attention
    from model_builders import make_model, randn, vi
    from onnx import helper

    def categories(model, shape):
        steps = plan_nodes(onnx_lrp.Explainer(model).graph(shape), onnx_lrp.composites.get("attnlrp"))
        return {s.node.input[1]: s.category for s in steps if s.node.op_type == "MatMul"
                and s.category != "bilinear"}

    assert categories(separate_attention(), (L, E)) == {f"w_{p}": "attention_projection" for p in "qkvo"}
    mlp = make_model([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Reshape", ["h", "s"], ["a"]),
                      helper.make_node("MatMul", ["a", "w2"], ["y"])], [vi("x", ["N", 4])], [vi("y", ["N", 3])],
                     {"w1": randn((4, 4), 1), "w2": randn((4, 3), 2), "s": np.array([-1, 4])})
    assert categories(mlp, (4,)) == {"w1": "dense", "w2": "dense"}


def _without_biases(model: onnx.ModelProto) -> tuple[onnx.ModelProto, set[str]]:
    """The ViT with every additive constant zero: Conv/Gemm/LayerNorm biases, the dense layers' bias
    Adds, the position embedding and the class token (a constant concatenated or expanded into the
    tokens). Scalars stay: they are GELU's 1 and the attention scale, not biases."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    tensors = {t.name: t for t in model.graph.initializer}
    tensors.update({n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant"})
    zeroed = set()
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "LayerNormalization"):
            candidates = node.input[2:3]
        elif node.op_type in ("Add", "Concat", "Expand"):
            candidates = node.input[:1] if node.op_type == "Expand" else node.input
        else:
            continue
        for name in candidates:
            array = numpy_helper.to_array(tensors[name]) if name in tensors else None
            if array is not None and array.dtype.kind == "f" and array.size > 1:
                tensors[name].CopyFrom(numpy_helper.from_array(np.zeros_like(array), tensors[name].name))
                zeroed.add(name)
    return model, zeroed


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_cp_lrp_conserves_on_the_vit_without_biases(exporter):
    """ε = 0 and every additive constant zero: CP-LRP conserves on the ViT as on BERT (the softmax
    gets no relevance, every other rule is conservative); with the trained biases it does not."""
    ref = np.load(FIXTURES / "vit__cp_lrp_gamma.npz")
    source = onnx.load(FIXTURES / f"vit__{exporter}.onnx")
    model, zeroed = _without_biases(source)
    # 14 dense/conv/LayerNorm biases of the two-layer model, the head's, the position embedding, the class token
    assert "encoder.pos_embedding" in zeroed and len(zeroed) == 17, sorted(zeroed)
    biased = onnx_lrp.Explainer(source, composite="cp_lrp").explain(ref["inputs"], target=ref["target"])
    assert abs(biased.conservation()[0] - 1.0) > 1e-2, biased.conservation()
    for layer_norm in ("identity", "detach"):
        result = onnx_lrp.Explainer(model, composite="cp_lrp", layer_norm=layer_norm).explain(
            ref["inputs"], target=ref["target"])
        assert abs(result.conservation()[0] - 1.0) <= 1e-4, (layer_norm, result.conservation())
