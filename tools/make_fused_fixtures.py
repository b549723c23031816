#!/usr/bin/env python
"""Fuse the transformer fixtures with onnxruntime's transformer optimizer, for tests/test_fused_ops.py.

Run with an environment that has ``sympy`` (the optimizer's symbolic shape inference needs it; the
test extra does not), from the repository root::

    python tools/make_fused_fixtures.py            # -> tests/fixtures/attnlrp/fused/
    python tools/make_fused_fixtures.py --gpt2     # first export the seeded GPT-2 (torch, transformers)
    python tools/make_fused_fixtures.py --report   # fused vs unfused relevance table (no sympy needed)

Each fixture is ``onnxruntime.transformers.optimizer.optimize_model`` applied to an unfused export
in ``tests/fixtures/attnlrp`` (tools/make_attnlrp_fixtures.py), with the fusion options that make
the optimizer write the ``com.microsoft`` op named in the fixture (what it writes for each source is
printed). GPT-2 is exported here (``--gpt2``, TorchScript exporter, HuggingFace's GPT2LMHeadModel from a
2-layer config with seeded weights, eager attention: its causal mask is a ``Where``), since no
fixture of it exists. ``opt_level=0`` runs the optimizer's Python fusions only; the ``_ort`` variant also runs
onnxruntime's own level-1 graph optimizations and saves their result, as a deployment would.
"""
from __future__ import annotations

import collections
import logging
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = ROOT / "tests" / "fixtures" / "attnlrp"
OUT = SOURCES / "fused"

#: name -> (unfused source, optimizer model_type, heads, hidden size, opt_level, fusion option changes)
FIXTURES = {
    "bert_ids__attention": ("bert_ids__torchscript", "bert", 4, 32, 0, {}),
    "bert_ids__mha": ("bert_ids__torchscript", "bert", 4, 32, 0, {"use_multi_head_attention": True}),
    "bert_ids__attention_ort": ("bert_ids__torchscript", "bert", 4, 32, 1, {}),
    "llama_ids__skip_simplified": ("llama_ids__torchscript", "gpt2", 4, 32, 0, {}),
    "vit__skip_layernorm": ("vit__dynamo", "vit", 2, 32, 0, {}),
    "gpt2_ids__skip_fastgelu": ("fused/gpt2_ids__torchscript", "gpt2", 4, 32, 0, {}),
}


def export_gpt2() -> None:
    """GPT2LMHeadModel (2 layers, 4 heads, hidden 32, vocabulary 48), seeded as the other fixtures,
    from token ids and the attention mask to the next-token logits."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    sys.path.insert(0, str(ROOT / "tools"))
    from make_attnlrp_fixtures import _seed_params

    config = GPT2Config(vocab_size=48, n_positions=32, n_embd=32, n_layer=2, n_head=4, n_inner=64,
                        attn_implementation="eager")
    lm = GPT2LMHeadModel(config).eval()
    _seed_params(lm, seed=5)

    class NextToken(torch.nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids, attention_mask):
            return self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, -1]

    ids = torch.randint(1, 48, (1, 8), generator=torch.Generator().manual_seed(6))
    OUT.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(NextToken(lm), (ids, torch.ones_like(ids)), str(OUT / "gpt2_ids__torchscript.onnx"),
                      input_names=["input_ids", "attention_mask"], output_names=["logits"], opset_version=17,
                      dynamo=False)


def main() -> None:
    if "--report" in sys.argv:
        return report()
    if "--gpt2" in sys.argv:
        export_gpt2()
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    logging.disable(logging.WARNING)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (source, model_type, heads, hidden, level, options) in FIXTURES.items():
        fusion = FusionOptions(model_type)
        for key, value in options.items():
            setattr(fusion, key, value)
        fused = optimize_model(str(SOURCES / f"{source}.onnx"), model_type=model_type, num_heads=heads,
                               hidden_size=hidden, opt_level=level, optimization_options=fusion, use_gpu=False)
        path = OUT / f"{name}.onnx"
        fused.save_model_to_file(str(path))
        ops = collections.Counter(n.op_type for n in fused.model.graph.node if n.domain == "com.microsoft")
        print(f"{path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB) from {source}: {dict(ops)}")


def report() -> None:
    """max|ΔR|/max|R| of each fused fixture against its unfused export, and against LXT 2.1."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))
    from test_fused_ops import (FUSED, TOKEN_CASES, _vit_explainer, explain_ids, gpt2_with_attention, relative,
                                with_embed_layer_norm)

    print("| fused fixture | composite | max|ΔR|/max|R| fused vs unfused | vs LXT 2.1 |")
    print("|---|---|---|---|")
    for fused, source, composite in TOKEN_CASES:
        ref = np.load(SOURCES / f"{source}__{composite if source == 'llama_ids' else 'attnlrp'}.npz")
        got = explain_ids(FUSED / f"{fused}.onnx", ref, composite)
        want = explain_ids(SOURCES / f"{source}__torchscript.onnx", ref, composite)
        lxt = f"{relative(got.relevance, ref['relevance']):.1e}" if composite == "attnlrp" or "llama" in source else "-"
        print(f"| {fused} | {composite} | {relative(got.relevance, want.relevance):.1e} | {lxt} |")
    ref = np.load(SOURCES / "bert_ids__attnlrp.npz")
    for composite in ("attnlrp", "cp_lrp"):
        got = explain_ids(with_embed_layer_norm(), ref, composite)
        want = explain_ids(SOURCES / "bert_ids__torchscript.onnx", ref, composite)
        lxt = f"{relative(got.relevance, ref['relevance']):.1e}" if composite == "attnlrp" else "-"
        print(f"| bert_ids__attention + EmbedLayerNormalization | {composite} | "
              f"{relative(got.relevance, want.relevance):.1e} | {lxt} |")
    ref = np.load(SOURCES / "vit__cp_lrp_gamma.npz")
    gamma = float(ref["gamma"])
    got = _vit_explainer(FUSED / "vit__skip_layernorm.onnx", gamma).explain(ref["inputs"], target=ref["target"])
    want = _vit_explainer(SOURCES / "vit__dynamo.onnx", gamma).explain(ref["inputs"], target=ref["target"])
    print(f"| vit__skip_layernorm | cp_lrp + Gamma({gamma}) | {relative(got.relevance, want.relevance):.1e} | "
          f"{relative(got.relevance, ref['relevance']):.1e} |")
    import onnx_lrp

    ids = np.random.default_rng(7).integers(1, 48, (1, 8))
    for composite in ("attnlrp", "cp_lrp"):
        r = {name: onnx_lrp.Explainer(FUSED / f"{name}.onnx", composite=composite, input_name="input_ids").explain(
            ids, feeds={"attention_mask": np.ones_like(ids)}, target=5).relevance
             for name in ("gpt2_ids__skip_fastgelu", "gpt2_ids__torchscript")}
        causal = onnx_lrp.Explainer(gpt2_with_attention(), composite=composite, input_name="input_ids").explain(
            ids, feeds={"attention_mask": np.ones_like(ids)}, target=5).relevance
        print(f"| gpt2_ids__skip_fastgelu | {composite} | "
              f"{relative(r['gpt2_ids__skip_fastgelu'], r['gpt2_ids__torchscript']):.1e} | - |")
        print(f"| gpt2_ids + causal Attention | {composite} | {relative(causal, r['gpt2_ids__torchscript']):.1e} | - |")


if __name__ == "__main__":
    sys.exit(main())
