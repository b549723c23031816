"""Models fused by onnxruntime's transformer optimizer explain as their unfused export does.

Fixtures: tools/make_fused_fixtures.py runs ``onnxruntime.transformers.optimizer.optimize_model`` on
the seeded exports of tools/make_attnlrp_fixtures.py (BERT from token ids with a padded mask, Llama,
torchvision's ViT; and a seeded GPT-2 it exports itself), which writes ``Attention`` / ``MultiHeadAttention``, ``SkipLayerNormalization``,
``SkipSimplifiedLayerNormalization``, ``BiasGelu``, ``FastGelu`` (GPT-2's tanh GELU) and (with onnxruntime's level-1 optimizations)
``Gelu``. Canonization expands them back (:mod:`onnx_lrp.canonize.contrib_ops`); the relevance must
equal the unfused model's to float32 rounding, and still agree with LXT 2.1.
"""
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnx_lrp
from onnx_lrp import rules

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "attnlrp"
FUSED = FIXTURES / "fused"
#: float32 rounding of two graphs computing the same function in a different order
SAME = 1e-5

TOKEN_CASES = [(fused, source, composite)
               for fused, source, composites in (
                   ("bert_ids__attention", "bert_ids", ["attnlrp", "cp_lrp"]),
                   ("bert_ids__mha", "bert_ids", ["attnlrp", "cp_lrp"]),
                   ("bert_ids__attention_ort", "bert_ids", ["attnlrp"]),
                   ("llama_ids__skip_simplified", "llama_ids", ["attnlrp", "cp_lrp"]))
               for composite in composites]


def relative(r, ref):
    return float(np.abs(np.asarray(r, np.float64) - ref).max() / np.abs(ref).max())


def explain_ids(path, ref, composite):
    explainer = onnx_lrp.Explainer(path, composite=composite, input_name="input_ids")
    assert not [n.op_type for n in explainer.model.graph.node if n.domain == "com.microsoft"]
    return explainer.explain(ref["input_ids"], feeds={"attention_mask": ref["attention_mask"]}, target=ref["target"])


def ort_output(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("fused,source,composite", TOKEN_CASES)
def test_fused_token_model_explains_as_the_unfused_export(fused, source, composite):
    # LXT's reference: the llama fixtures store one per composite; BERT's attnlrp one holds the same ids
    ref = np.load(FIXTURES / f"{source}__{composite if source == 'llama_ids' else 'attnlrp'}.npz")
    got = explain_ids(FUSED / f"{fused}.onnx", ref, composite)
    want = explain_ids(FIXTURES / f"{source}__torchscript.onnx", ref, composite)
    assert relative(got.relevance, want.relevance) <= SAME
    # the fused graph's output as onnxruntime's contrib kernels compute it
    logits = ort_output(FUSED / f"{fused}.onnx", {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]})
    np.testing.assert_allclose(got.target_output, logits.reshape(1, -1)[0, ref["target"]], rtol=1e-5)
    if composite == "attnlrp" or source == "llama_ids":  # LXT 2.1 has no CP-LRP map for BERT
        r, lxt = np.asarray(got.relevance, np.float64).ravel(), ref["relevance"].astype(np.float64).ravel()
        assert np.corrcoef(r, lxt)[0, 1] >= 0.9999 and relative(got.relevance, ref["relevance"]) <= 1e-3


def _vit_explainer(path, gamma):
    """LXT's ViT recipe as tests/test_lxt_vit.py applies it: the projections inside
    nn.MultiheadAttention stay LRP-0."""
    source = onnx.load(path)
    scopes = {n.name: " ".join(p.value for p in n.metadata_props if p.key == "pkg.torch.onnx.name_scopes")
              for n in source.graph.node}
    projections = {n for n, scope in scopes.items() if "self_attention" in n + scope}
    return onnx_lrp.Explainer(source, composite="cp_lrp", conv_gamma=gamma, linear_gamma=gamma, batch_axis=None,
                              name_map={n: rules.Epsilon(0.0) for n in projections
                                        if n in {m.name for m in source.graph.node
                                                 if m.op_type in ("MatMul", "Gemm")}})


def test_fused_vit_explains_as_the_unfused_export():
    ref = np.load(FIXTURES / "vit__cp_lrp_gamma.npz")
    gamma = float(ref["gamma"])
    got = _vit_explainer(FUSED / "vit__skip_layernorm.onnx", gamma).explain(ref["inputs"], target=ref["target"])
    want = _vit_explainer(FIXTURES / "vit__dynamo.onnx", gamma).explain(ref["inputs"], target=ref["target"])
    assert relative(got.relevance, want.relevance) <= SAME
    assert relative(got.relevance, ref["relevance"]) <= 1e-3


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_fused_gpt2_explains_as_the_unfused_export(composite):
    """GPT-2 as HuggingFace writes it: causal mask by ``Where``, tanh GELU (fused: FastGelu). The
    optimizer does not fuse this attention (its GPT-2 pattern predates the export)."""
    ids = np.random.default_rng(7).integers(1, 48, (1, 8))
    mask = np.ones_like(ids)

    def explain(path):
        explainer = onnx_lrp.Explainer(path, composite=composite, input_name="input_ids")
        return explainer.explain(ids, feeds={"attention_mask": mask}, target=5)

    got, want = explain(FUSED / "gpt2_ids__skip_fastgelu.onnx"), explain(FUSED / "gpt2_ids__torchscript.onnx")
    assert relative(got.relevance, want.relevance) <= SAME
    logits = ort_output(FUSED / "gpt2_ids__skip_fastgelu.onnx", {"input_ids": ids, "attention_mask": mask})
    np.testing.assert_allclose(got.target_output, logits[:, 5], rtol=1e-5)


def test_past_state_attention_names_the_node_and_the_unfused_export():
    model = onnx.load(FUSED / "bert_ids__attention.onnx")
    attention = next(n for n in model.graph.node if n.op_type == "Attention")
    while len(attention.input) < 5:
        attention.input.append("")
    attention.input[4] = "past"
    model.graph.input.append(onnx.helper.make_tensor_value_info("past", onnx.TensorProto.FLOAT, [2, 1, 4, 0, 8]))
    with pytest.raises(onnx_lrp.errors.UnsupportedOp, match=rf"'{attention.name}'.*'Attention'.*past state.*"
                                                            "without onnxruntime's transformer optimizer"):
        onnx_lrp.Explainer(model, composite="attnlrp", input_name="input_ids")
