#!/usr/bin/env python
"""The recurrent-layer table of docs/recurrent.md: op × direction × exporter → explained, LRP
against the float64 oracle of Arras et al.'s rules, conservation, gradient against autograd.

    python tools/recurrent_table.py     # reads tests/fixtures/recurrent (tools/make_recurrent_fixtures.py)

No torch needed. Conservation: composite epsilon with ε = 0 and cell_epsilon = 0 on the bias-free
models; oracle: ε = 1e-3, cell_epsilon = 1e-2; gradient: the Gradient composite against torch's
float64 autograd stored in the fixture.
"""
import itertools
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from onnx_lrp import Explainer  # noqa: E402
from onnx_lrp.attribution import attributor  # noqa: E402
from onnx_lrp.errors import OnnxLrpError  # noqa: E402
from test_recurrent_exports import _oracle_relevance  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "recurrent"


def row(op, kind, exporter):
    data = np.load(FIXTURES / f"{op}_{kind}.npz")
    path = FIXTURES / f"{op}_{kind}_{exporter}.onnx"
    direction = {"uni": "forward", "bi": "bidirectional"}[kind]
    x, targets = data["x"], data["targets"]
    try:
        conserving = Explainer(path, composite="epsilon", epsilon=0.0, cell_epsilon=0.0).explain(x, target=targets)
    except OnnxLrpError as exc:
        return f"| {op} | {direction} | {exporter} | no: {type(exc).__name__}, {str(exc).split('. ')[0]} | — | — | — |"
    explanation = Explainer(path, composite="epsilon", epsilon=1e-3, cell_epsilon=1e-2).explain(x, target=targets)
    expected = _oracle_relevance(op, kind, data, 1e-3, 1e-2)
    oracle = np.abs(explanation.relevance - expected).max() / np.abs(expected).max()
    grad = attributor(path).gradient(x, targets)
    gradient = np.abs(grad - data["gradient"]).max() / np.abs(data["gradient"]).max()
    conservation = np.abs(conserving.conservation() - 1).max()
    return f"| {op} | {direction} | {exporter} | yes | {oracle:.1e} | {conservation:.1e} | {gradient:.1e} |"


def stacked_row(op, exporter):
    """Two bidirectional layers: no oracle (it covers one layer); conservation and gradient."""
    data = np.load(FIXTURES / f"stacked_{op}.npz")
    path = FIXTURES / f"stacked_{op}_{exporter}.onnx"
    x, targets = data["x"], data["targets"]
    conserving = Explainer(path, composite="epsilon", epsilon=0.0, cell_epsilon=0.0).explain(x, target=targets)
    grad = attributor(path).gradient(x, targets)
    gradient = np.abs(grad - data["gradient"]).max() / np.abs(data["gradient"]).max()
    conservation = np.abs(conserving.conservation() - 1).max()
    return f"| {op} × 2 layers | bidirectional | {exporter} | yes | — | {conservation:.1e} | {gradient:.1e} |"


def main():
    print("| op | direction | exporter | explained | LRP vs oracle (max abs diff / max abs) | "
          "abs(conservation − 1) | gradient vs autograd (max abs diff / max abs) |")
    print("|---|---|---|---|---|---|---|")
    for case in itertools.product(["LSTM", "GRU", "RNN"], ["uni", "bi"], ["legacy", "dynamo"]):
        print(row(*case))
    for case in itertools.product(["LSTM", "GRU"], ["legacy", "dynamo"]):
        print(stacked_row(*case))


if __name__ == "__main__":
    main()
