"""Models fused by onnxruntime's transformer optimizer explain as their unfused export does.

Fixtures: tools/make_fused_fixtures.py runs ``onnxruntime.transformers.optimizer.optimize_model`` on
the seeded exports of tools/make_attnlrp_fixtures.py (BERT from token ids with a padded mask, Llama,
torchvision's ViT; and a seeded GPT-2 it exports itself), which writes ``Attention`` / ``MultiHeadAttention``, ``SkipLayerNormalization``,
``SkipSimplifiedLayerNormalization``, ``BiasGelu``, ``FastGelu`` (GPT-2's tanh GELU) and (with onnxruntime's level-1 optimizations)
``Gelu``. Canonization expands them back (:mod:`onnx_lrp.canonize.contrib_ops`); the relevance must
equal the unfused model's to float32 rounding, and still agree with LXT 2.1.
"""
import functools
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
    """Relevance at the word embeddings of the reference's ids (``path``: a file or a ModelProto)."""
    explainer = onnx_lrp.Explainer(path, composite=composite, input_name="input_ids")
    assert not [n.op_type for n in explainer.model.graph.node if n.domain == "com.microsoft"]
    return explainer.explain(ref["input_ids"], feeds={"attention_mask": ref["attention_mask"]}, target=ref["target"])


@functools.lru_cache(maxsize=None)
def unfused(source: str, composite: str) -> np.ndarray:
    """Relevance of the unfused token-id export ``source`` (computed once per test session)."""
    ref = np.load(FIXTURES / f"{source}__{composite if source == 'llama_ids' else 'attnlrp'}.npz")
    return explain_ids(FIXTURES / f"{source}__torchscript.onnx", ref, composite).relevance


@functools.lru_cache(maxsize=None)
def unfused_gpt2(composite: str) -> np.ndarray:
    ids = np.random.default_rng(7).integers(1, 48, (1, 8))
    explainer = onnx_lrp.Explainer(FUSED / "gpt2_ids__torchscript.onnx", composite=composite, input_name="input_ids")
    return explainer.explain(ids, feeds={"attention_mask": np.ones_like(ids)}, target=5).relevance


def ort_output(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("fused,source,composite", TOKEN_CASES)
def test_fused_token_model_explains_as_the_unfused_export(fused, source, composite):
    # LXT's reference: the llama fixtures store one per composite; BERT's attnlrp one holds the same ids
    ref = np.load(FIXTURES / f"{source}__{composite if source == 'llama_ids' else 'attnlrp'}.npz")
    got = explain_ids(FUSED / f"{fused}.onnx", ref, composite)
    assert relative(got.relevance, unfused(source, composite)) <= SAME
    # the fused graph's output as onnxruntime's contrib kernels compute it
    logits = ort_output(FUSED / f"{fused}.onnx", {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]})
    np.testing.assert_allclose(got.target_output, logits.reshape(1, -1)[0, ref["target"]], rtol=1e-5)
    if composite == "attnlrp" or source == "llama_ids":  # LXT 2.1 has no CP-LRP map for BERT
        r, lxt = np.asarray(got.relevance, np.float64).ravel(), ref["relevance"].astype(np.float64).ravel()
        assert np.corrcoef(r, lxt)[0, 1] >= 0.9999 and relative(got.relevance, ref["relevance"]) <= 1e-3


def with_embed_layer_norm() -> onnx.ModelProto:
    """The fused BERT with its embeddings and mask index written as one EmbedLayerNormalization, as
    the optimizer writes it for exports whose embedding pattern it recognises (ids and mask cast
    to int32, the mask index its output)."""
    model = onnx.load(FUSED / "bert_ids__attention.onnx")
    graph = model.graph
    ln = next(n for n in graph.node if n.op_type == "LayerNormalization")
    reduce = next(n for n in graph.node if n.output[0] == "mask_index_0")
    embedding = "encoder.embeddings."
    graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((1, 8), np.int32), "segment_ids"))
    nodes = [onnx.helper.make_node("Cast", ["input_ids"], ["input_ids_int32"], to=onnx.TensorProto.INT32),
             onnx.helper.make_node(
                 "EmbedLayerNormalization",
                 ["input_ids_int32", "segment_ids", embedding + "word_embeddings.weight",
                  embedding + "position_embeddings.weight", embedding + "token_type_embeddings.weight",
                  ln.input[1], ln.input[2], "attention_mask_int32"], [ln.output[0], "mask_index_0"],
                 name="EmbedLayerNormalization_0", domain="com.microsoft", epsilon=onnx.helper.get_attribute_value(
                     next(a for a in ln.attribute if a.name == "epsilon")))]
    # the token-type ids' Expand chain stays, unread (canonization prunes it)
    kept = [n for n in graph.node if n is not ln and n is not reduce and not n.name.startswith("/encoder/embeddings/")]
    at = next(i for i, n in enumerate(kept) if n.op_type == "Attention")
    del graph.node[:]
    graph.node.extend(kept[:at] + nodes + kept[at:])
    return model


def test_embed_layer_normalization_explains_as_the_unfused_export():
    ref = np.load(FIXTURES / "bert_ids__attnlrp.npz")
    model = with_embed_layer_norm()
    assert [n.op_type for n in model.graph.node].count("EmbedLayerNormalization") == 1
    assert not [n for n in model.graph.node if "input_ids" in n.input and n.op_type != "Cast"]
    got = explain_ids(model, ref, "attnlrp")
    assert got.relevance.shape == ref["relevance"].shape
    assert relative(got.relevance, unfused("bert_ids", "attnlrp")) <= SAME
    feeds = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got.target_output, session.run(None, feeds)[0][0, ref["target"]], rtol=1e-5)


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

    got = explain(FUSED / "gpt2_ids__skip_fastgelu.onnx")
    assert relative(got.relevance, unfused_gpt2(composite)) <= SAME
    logits = ort_output(FUSED / "gpt2_ids__skip_fastgelu.onnx", {"input_ids": ids, "attention_mask": mask})
    np.testing.assert_allclose(got.target_output, logits[:, 5], rtol=1e-5)


def gpt2_with_attention() -> onnx.ModelProto:
    """The seeded GPT-2 with each attention written as one causal ``Attention`` (unidirectional=1,
    the 0/1 mask as mask_index), as the optimizer's GPT-2 fusion writes it for the exports it
    recognises; the unfused nodes stay, unread (canonization prunes them)."""
    model = onnx.load(FUSED / "gpt2_ids__torchscript.onnx")
    graph = model.graph
    cast = onnx.helper.make_node("Cast", ["attention_mask"], ["mask_int32"], to=onnx.TensorProto.INT32)
    nodes = []
    for layer in range(2):
        scope = f"/lm/transformer/h.{layer}"
        output = f"{scope}/attn/Reshape_3_output_0"
        for node in graph.node:  # the old attention output becomes dead
            if output in node.output:
                node.output[list(node.output).index(output)] = output + "_unfused"
        nodes.append(onnx.helper.make_node(
            "Attention", [f"{scope}/ln_1/LayerNormalization_output_0", f"lm.transformer.h.{layer}.attn.c_attn.weight",
                          f"lm.transformer.h.{layer}.attn.c_attn.bias", "mask_int32"], [output],
            name=f"Attention_{layer}", domain="com.microsoft", num_heads=4, unidirectional=1))
    ordered = [cast]
    for node in graph.node:
        ordered.append(node)
        ordered += [n for n in nodes if n.input and n.input[0] in node.output]
    del graph.node[:]
    graph.node.extend(ordered)
    model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return model


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_causal_attention_explains_as_gpt2s_where_mask(composite):
    """Fused causal attention (the kernel adds the mask) against GPT-2's own ``Where`` causal mask."""
    ids = np.random.default_rng(7).integers(1, 48, (1, 8))
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    model = gpt2_with_attention()

    def explain(source):
        explainer = onnx_lrp.Explainer(source, composite=composite, input_name="input_ids")
        assert not [n for n in explainer.model.graph.node if n.domain == "com.microsoft"]
        return explainer.explain(ids, feeds={"attention_mask": feeds["attention_mask"]}, target=5)

    got = explain(model)
    assert relative(got.relevance, unfused_gpt2(composite)) <= SAME
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got.target_output, session.run(None, feeds)[0][:, 5], rtol=1e-5)


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
