"""torchvision's VisionTransformer with LXT 2.1's ViT recipe: CP-LRP attention, identity GELU,
detached LayerNorm, zennit Gamma(0.25) on Conv2d and Linear modules. ``nn.MultiheadAttention`` calls
its projections functionally, so module hooks never see them and LXT leaves them at LRP-0: the same
here by ``name_map`` on the dense nodes inside ``self_attention`` (by node name for TorchScript, by
the dynamo exporter's ``pkg.torch.onnx.name_scopes`` metadata otherwise)."""
import pathlib

import numpy as np
import onnx
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
    # batch_axis=None: exported at a fixed batch of 1, and nn.MultiheadAttention works on (L, N, E)
    # inside, so axis 0 is no batch there
    explainer = onnx_lrp.Explainer(source, composite="cp_lrp", conv_gamma=gamma, linear_gamma=gamma,
                                   batch_axis=None, name_map={n: rules.Epsilon(0.0) for n in names})
    result = explainer.explain(ref["inputs"], target=ref["target"])
    r, lxt = result.relevance.astype(np.float64).ravel(), ref["relevance"].astype(np.float64).ravel()
    pearson, max_rel = np.corrcoef(r, lxt)[0, 1], np.abs(r - lxt).max() / np.abs(lxt).max()
    assert pearson >= 0.9999 and max_rel <= 1e-3, (pearson, max_rel)
