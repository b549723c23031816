#!/usr/bin/env python
"""What the explanations of PaddleOCR's PP-OCRv4 recogniser (rapidocr-onnxruntime's file, copied by
tools/make_ppocr_fixture.py) show, per text line and composite, in one table:

- read: the greedy CTC reading of the explained output (rapidocr's own reading is in the fixture);
- path ΣR/y: Σ relevance over Σ logits along the decoded path (the trained model has biases);
- glyph hits: for each drawn character, explaining its time step's logit alone, whether its own
  glyph (summed over its columns) gets the most relevance of all glyphs;
- no-bias ΣR/y − 1: the same model with every bias zeroed, one time step's logit (|·| ≤ 1e-5 means
  the composite conserves on this graph).

    PYTHONPATH=$PWD python tools/ppocr_report.py
"""
from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import numpy_helper

import onnx_lrp

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "thirdparty"
MODEL = FIXTURES / "ch_PP-OCRv4_rec_infer.onnx"


def ctc_path(logits: np.ndarray) -> list[tuple[int, int]]:
    best = logits.argmax(-1)
    emitted = np.r_[True, best[1:] != best[:-1]] & (best != 0)
    return [(int(t), int(best[t])) for t in np.flatnonzero(emitted)]


def one_hots(shape, steps) -> np.ndarray:
    weights = np.zeros((len(steps),) + shape, np.float32)
    for row, group in enumerate(steps):
        for t, c in group:
            weights[row, t, c] = 1.0
    return weights


def without_biases(model: onnx.ModelProto) -> onnx.ModelProto:
    """Convolution and dense biases, BatchNorm shift and mean, constant offsets zeroed (hard-swish's +3
    and LayerNorm's ε, which feed Clip and Sqrt, kept)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    constants = {n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant"}
    constants.update({t.name: t for t in model.graph.initializer})
    consumers = {}
    for node in model.graph.node:
        for t in node.input:
            consumers.setdefault(t, set()).add(node.op_type)
    for node in model.graph.node:
        names = []
        if node.op_type == "Conv" and len(node.input) > 2:
            names = [node.input[2]]
        elif node.op_type == "BatchNormalization":
            names = list(node.input[2:4])
        elif node.op_type == "Add" and not consumers.get(node.output[0], set()) & {"Clip", "Sqrt"}:
            names = [t for t in node.input if t in constants]
        for name in names:
            tensor = constants[name]
            tensor.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(tensor)), tensor.name))
    return model


def main():
    meta = {p.key: p.value for p in onnx.load(str(MODEL), load_external_data=False).metadata_props}
    characters = ["<blank>"] + meta["character"].splitlines() + [" "]
    samples = dict(np.load(FIXTURES / "ppocr_rec_samples.npz"))
    print(f"{MODEL.name} from {samples['package']}, {MODEL.stat().st_size / 1e6:.1f} MB")
    print("| line | rapidocr reads | composite | read | path ΣR/y | glyph hits | no-bias ΣR/y − 1 |")
    print("|---|---|---|---|---|---|---|")
    bare = without_biases(onnx.load(str(MODEL)))
    for composite in ("cp_lrp", "attnlrp"):
        explainer = onnx_lrp.Explainer(MODEL, composite=composite)
        no_bias = onnx_lrp.Explainer(bare, composite=composite)
        for i, text in enumerate(samples["text"]):
            x = samples["x"][i:i + 1]
            probe = explainer.explain(x, target=(0, 0)).output
            path = ctc_path(probe[0])
            res = explainer.explain(x, target=one_hots(probe.shape[1:], [path]))
            read = "".join(characters[c] for _, c in path)
            drawn = [k for k, ch in enumerate(str(text)) if ch != " "]
            steps = [s for s in path if characters[s[1]] != " "]
            hits = "n/a (reading differs)"
            if len(steps) == len(drawn):
                per = explainer.explain(np.repeat(x, len(steps), 0), target=one_hots(probe.shape[1:], [[s] for s in steps]))
                columns = per.relevance.sum(axis=(1, 2))
                glyphs = samples["glyphs"][i]
                best = [int(np.argmax([columns[r, glyphs[k, 0]:glyphs[k, 1]].sum() for k in drawn])) for r in range(len(steps))]
                hits = f"{sum(b == r for r, b in enumerate(best))}/{len(steps)}"
            zero = no_bias.explain(x, target=steps[len(steps) // 2])
            print(f"| {text!s} | {samples['read'][i]!s} | {composite} | {read} | {res.conservation()[0]:.3f} | {hits} "
                  f"| {zero.conservation()[0] - 1:.1e} |")


if __name__ == "__main__":
    main()
