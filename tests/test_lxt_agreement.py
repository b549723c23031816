"""Agreement with LXT 2.1 (AttnLRP, Achtibat et al. 2024) on transformers exported to ONNX.

The fixtures (tests/fixtures/attnlrp/, built by ``tools/make_attnlrp_fixtures.py`` with torch,
transformers 4.52.4 and lxt 2.1) hold each model exported from its *unpatched* torch module by the
TorchScript and the dynamo exporter, with ``inputs_embeds`` as the ONNX input, and LXT's relevance
``inputs_embeds ⊙ modified gradient`` after ``lxt.efficient.monkey_patch`` (eager attention).
Per element: Pearson ≥ 0.9999 and max|ΔR| / max|R| ≤ 1e-3.

* ``bert``: 2-layer BERT, seeded; one dimension of the [CLS] hidden state (LXT 2.1 has no CP-LRP
  map for BERT, so only ``attnlrp``).
* ``llama``: 2-layer LlamaForCausalLM, seeded (RoPE, RMSNorm, gated SiLU MLP, grouped-query heads,
  causal mask); the next-token logit.
"""
import pathlib

import numpy as np
import pytest

import onnx_lrp

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "attnlrp"
#: all-MiniLM-L6-v2 (real weights, ~45 MB per export: not a fixture), built by
#: ``tools/make_attnlrp_fixtures.py --only --minilm build/attnlrp``
MINILM = pathlib.Path(__file__).parents[1] / "build" / "attnlrp"
CASES = [(model, exporter, composite)
         for model, composites in (("bert", ["attnlrp"]), ("llama", ["attnlrp", "cp_lrp"]))
         for exporter in ("torchscript", "dynamo") for composite in composites]


def agreement(relevance, reference) -> tuple[float, float]:
    """(Pearson correlation, max|ΔR| / max|R|) per element, in float64."""
    r, ref = np.asarray(relevance, np.float64).ravel(), np.asarray(reference, np.float64).ravel()
    return float(np.corrcoef(r, ref)[0, 1]), float(np.abs(r - ref).max() / np.abs(ref).max())


def explain(model: str, exporter: str, composite: str, **kwargs):
    ref = np.load(FIXTURES / f"{model}__{composite}.npz")
    explainer = onnx_lrp.Explainer(FIXTURES / f"{model}__{exporter}.onnx", composite=composite, **kwargs)
    return explainer.explain(ref["inputs"], target=ref["target"]), ref


@pytest.mark.parametrize("model,exporter,composite", CASES)
def test_agrees_with_lxt(model, exporter, composite):
    result, ref = explain(model, exporter, composite)
    np.testing.assert_allclose(result.target_output, ref["output"][0, ref["target"]], rtol=1e-5)
    pearson, max_rel = agreement(result.relevance, ref["relevance"])
    assert pearson >= 0.9999 and max_rel <= 1e-3, (pearson, max_rel)


@pytest.mark.skipif(not (MINILM / "minilm_cls__attnlrp.npz").exists(), reason="all-MiniLM-L6-v2 not built "
                    "(tools/make_attnlrp_fixtures.py --only --minilm build/attnlrp)")
@pytest.mark.parametrize("model", ["minilm_cls", "minilm_mean"])
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_trained_minilm_agrees_with_lxt(model, exporter):
    """Trained weights: one dimension of the [CLS] hidden state and of the mean-pooled embedding."""
    ref = np.load(MINILM / f"{model}__attnlrp.npz")
    result = onnx_lrp.Explainer(MINILM / f"{model}__{exporter}.onnx", composite="attnlrp").explain(
        ref["inputs"], target=ref["target"])
    pearson, max_rel = agreement(result.relevance, ref["relevance"])
    assert pearson >= 0.9999 and max_rel <= 1e-3, (pearson, max_rel)


def test_lxt_fixture_is_float32_noise_of_its_float64_run():
    """The reference itself: LXT in float32 vs float64 differ far below the tolerance."""
    for path in FIXTURES.glob("*.npz"):
        ref = np.load(path)
        assert agreement(ref["relevance"], ref["relevance64"])[1] < 1e-5, path.name


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("layer_norm", ["identity", "detach"])
def test_cp_lrp_conserves_on_bert_without_biases(exporter, layer_norm):
    """ε = 0, every bias, LayerNorm β and position/token-type embedding zero: CP-LRP conserves
    (the softmax gets no relevance; every other rule is conservative)."""
    ref = np.load(FIXTURES / "bert_nobias__attnlrp.npz")
    explainer = onnx_lrp.Explainer(FIXTURES / f"bert_nobias__{exporter}.onnx", composite="cp_lrp",
                                   layer_norm=layer_norm)
    result = explainer.explain(ref["inputs"], target=ref["target"])
    assert abs(result.conservation()[0] - 1.0) <= 1e-4, result.conservation()


def test_attnlrp_does_not_conserve_at_the_softmax():
    """AttnLRP's softmax rule is a Taylor decomposition with a bias term (Achtibat et al. 2024,
    Prop. 3.1): relevance is not conserved there, in LXT as here, by the same amount."""
    result, ref = explain("bert_nobias", "torchscript", "attnlrp", layer_norm="identity")
    lxt_ratio = ref["relevance"].sum(dtype=np.float64) / ref["output"][0, ref["target"][0]]
    assert abs(result.conservation()[0] - 1.0) > 0.05
    detached, _ = explain("bert_nobias", "torchscript", "attnlrp")
    assert abs(detached.conservation()[0] - lxt_ratio) <= 1e-4 * abs(lxt_ratio)
