#!/usr/bin/env python
"""Print onnx-lrp's agreement with LXT 2.1 per model × exporter × composite, and conservation.

Reads the fixtures written by ``tools/make_attnlrp_fixtures.py`` (needs only onnx_lrp)::

    python tools/attnlrp_agreement.py                         # tests/fixtures/attnlrp
    python tools/attnlrp_agreement.py --dir build/attnlrp     # e.g. all-MiniLM-L6-v2

Columns: Pearson and max|ΔR|/max|R| of onnx-lrp against LXT in float32, the same for LXT float32
against LXT float64 (the reference's own noise), and ΣR / explained output for both.
"""
from __future__ import annotations

import argparse
import pathlib

import numpy as np

import onnx_lrp

ROOT = pathlib.Path(__file__).resolve().parents[1]


def agreement(relevance, reference):
    r, ref = np.asarray(relevance, np.float64).ravel(), np.asarray(reference, np.float64).ravel()
    return float(np.corrcoef(r, ref)[0, 1]), float(np.abs(r - ref).max() / np.abs(ref).max())


def rows(directory: pathlib.Path):
    for ref_path in sorted(directory.glob("*__*.npz")):
        model, composite = ref_path.stem.split("__")
        ref = np.load(ref_path)
        lxt_out = float(ref["output"][0, ref["target"][0]])
        for onnx_path in sorted(directory.glob(f"{model}__*.onnx")):
            exporter = onnx_path.stem.split("__")[1]
            result = onnx_lrp.Explainer(onnx_path, composite=composite).explain(ref["inputs"], target=ref["target"])
            pearson, max_rel = agreement(result.relevance, ref["relevance"])
            _, noise = agreement(ref["relevance"], ref["relevance64"])
            yield (model, exporter, composite, pearson, max_rel, noise, float(result.conservation()[0]),
                   float(ref["relevance"].sum(dtype=np.float64)) / lxt_out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=pathlib.Path, default=ROOT / "tests" / "fixtures" / "attnlrp")
    args = parser.parse_args()
    print("| model | exporter | composite | Pearson | max\\|ΔR\\|/max\\|R\\| | LXT f32 vs f64 | ΣR/y onnx-lrp | ΣR/y LXT |")
    print("|---|---|---|---|---|---|---|---|")
    for model, exporter, composite, pearson, max_rel, noise, cons, lxt_cons in rows(args.dir):
        print(f"| {model} | {exporter} | {composite} | {pearson:.8f} | {max_rel:.1e} | {noise:.1e} | "
              f"{cons:.6f} | {lxt_cons:.6f} |")


if __name__ == "__main__":
    main()
