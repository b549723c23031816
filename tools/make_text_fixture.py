#!/usr/bin/env python
"""Build the small sentence encoder that tests/test_text_cli.py explains end to end (no LXT reference:
the test checks the command line against the Python API; agreement with LXT on token ids is
tests/test_lxt_token_ids.py's).

    python tools/make_text_fixture.py     # -> tests/fixtures/text/bert_text.onnx (~40 kB)

A BERT from a 1-layer config (vocabulary 64, hidden 16, 2 heads), seeded like the AttnLRP fixtures,
taking ``input_ids``, ``attention_mask`` and ``token_type_ids`` (batch and sequence axes free) and
returning ``sentence_embedding``: the last hidden state mean-pooled over the unmasked tokens, as
tools/build_minilm.py builds all-MiniLM-L6-v2. TorchScript exporter, opset 17.
"""
from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from build_minilm import INPUTS, OPSET, OUTPUT, MeanPooledEncoder  # noqa: E402
from make_attnlrp_fixtures import _seed_params  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
PATH = ROOT / "tests" / "fixtures" / "text" / "bert_text.onnx"


def main() -> None:
    import transformers
    config = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32, type_vocab_size=2,
                                     hidden_act="gelu", attn_implementation="eager", hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)
    model = MeanPooledEncoder(transformers.BertModel(config, add_pooling_layer=False)).eval()
    _seed_params(model, seed=sum(map(ord, "bert_text")))
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 64, (2, 7)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, -3:] = 0
    types = np.zeros_like(ids)
    types[:, 4:] = 1
    sample = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    PATH.parent.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        expected = model(*(torch.from_numpy(sample[k]) for k in INPUTS)).numpy()
        torch.onnx.export(model, tuple(torch.from_numpy(sample[k]) for k in INPUTS), str(PATH), dynamo=False,
                          input_names=INPUTS, output_names=[OUTPUT], opset_version=OPSET, do_constant_folding=True,
                          dynamic_axes={**{k: axes for k in INPUTS}, OUTPUT: {0: "batch"}})
    onnx.save(onnx.load(str(PATH)), str(PATH))
    got = ort.InferenceSession(str(PATH), providers=["CPUExecutionProvider"]).run([OUTPUT], sample)[0]
    print(f"{PATH}: {PATH.stat().st_size / 1e3:.0f} kB, |onnxruntime - torch| = {np.abs(got - expected).max():.2e}")


if __name__ == "__main__":
    main()
