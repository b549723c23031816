"""Agreement with LXT 2.1 on token-id models: the ONNX input is ``input_ids`` (integers) with the
``attention_mask`` as a feed; onnx-lrp starts relevance at the word-embedding output, which is
what LXT calls ``inputs_embeds``. BERT pads its last two tokens (the mask becomes an additive bias
inside the graph); Llama is causal with a full mask. Fixtures: tools/make_attnlrp_fixtures.py
(``*_ids``). Per element: Pearson ≥ 0.9999 and max|ΔR| / max|R| ≤ 1e-3.
"""
import pathlib

import numpy as np
import pytest

import onnx_lrp

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "attnlrp"
CASES = [(model, exporter, composite)
         for model, composites in (("bert_ids", ["attnlrp"]), ("llama_ids", ["attnlrp", "cp_lrp"]))
         for exporter in ("torchscript", "dynamo") for composite in composites]


def agreement(relevance, reference):
    r, ref = np.asarray(relevance, np.float64).ravel(), np.asarray(reference, np.float64).ravel()
    return float(np.corrcoef(r, ref)[0, 1]), float(np.abs(r - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("model,exporter,composite", CASES)
def test_token_ids_agree_with_lxt_at_the_word_embeddings(model, exporter, composite):
    ref = np.load(FIXTURES / f"{model}__{composite}.npz")
    explainer = onnx_lrp.Explainer(FIXTURES / f"{model}__{exporter}.onnx", composite=composite,
                                   input_name="input_ids")
    result = explainer.explain(ref["input_ids"], feeds={"attention_mask": ref["attention_mask"]},
                               target=ref["target"])
    assert result.relevance.shape == ref["inputs"].shape, result.sources  # (N, T, H): the word embeddings
    np.testing.assert_allclose(result.target_output, ref["output"][0, ref["target"]], rtol=1e-5)
    pearson, max_rel = agreement(result.relevance, ref["relevance"])
    assert pearson >= 0.9999 and max_rel <= 1e-3, (pearson, max_rel)
