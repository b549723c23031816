"""Recurrent models exported from PyTorch by both exporters, and a trained one from PyPI
(fixtures by tools/make_recurrent_fixtures.py)."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from onnx_lrp import Explainer
from onnx_lrp.attribution import attributor
from onnx_lrp.errors import UnsupportedOp

from recurrent_oracle import Recurrent, lrp_linear

FIXTURES = Path(__file__).parent / "fixtures" / "recurrent"
CASES = list(itertools.product(["LSTM", "GRU", "RNN"], ["uni", "bi"], ["legacy", "dynamo"]))


def _case(op, kind, exporter):
    data = np.load(FIXTURES / f"{op}_{kind}.npz")
    return FIXTURES / f"{op}_{kind}_{exporter}.onnx", data


def _oracle_relevance(op, kind, data, eps, cell_eps):
    """torch's nn.GRU is ONNX's GRU with linear_before_reset=1."""
    layer = Recurrent(op, data["W"], data["R"], data["B"], data["R"].shape[-1],
                      "bidirectional" if kind == "bi" else "forward", linear_before_reset=int(op == "GRU"))
    head = data["head"]  # [classes, T·D·H]
    result = []
    for sample, target in zip(data["x"].astype(np.float64), data["targets"]):
        Y, _ = layer.forward(sample)
        flat = Y.reshape(-1)
        logits = head @ flat
        R_logits = np.zeros_like(logits)
        R_logits[target] = logits[target]
        R_Y = lrp_linear(flat, head, logits, R_logits, eps).reshape(Y.shape)
        result.append(layer.lrp(sample, R_Y, eps, cell_eps, 1e-6))
    return np.stack(result)


@pytest.mark.parametrize("op,kind,exporter", CASES)
def test_pytorch_export_is_explained_as_the_oracle_says(op, kind, exporter):
    path, data = _case(op, kind, exporter)
    x, targets = data["x"], data["targets"]
    if op == "RNN" and exporter == "dynamo":
        # the dynamo exporter unrolls nn.RNN on the time-major input (Slice/Concat along axis 0);
        # explaining it needs the batch axis tracked off axis 0
        with pytest.raises(UnsupportedOp, match="batch axis"):
            Explainer(path, composite="epsilon").explain(x, target=targets)
        return
    conserving = Explainer(path, composite="epsilon", epsilon=0.0, cell_epsilon=0.0).explain(x, target=targets)
    np.testing.assert_allclose(conserving.output, data["logits"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(conserving.conservation(), 1.0, rtol=0, atol=1e-4)
    explanation = Explainer(path, composite="epsilon", epsilon=1e-3, cell_epsilon=1e-2).explain(x, target=targets)
    expected = _oracle_relevance(op, kind, data, 1e-3, 1e-2)
    np.testing.assert_allclose(explanation.relevance, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize("op,kind,exporter", [c for c in CASES if c[::2] != ("RNN", "dynamo")])
def test_pytorch_export_gradient_equals_autograd(op, kind, exporter):
    path, data = _case(op, kind, exporter)
    grad = attributor(path).gradient(data["x"], data["targets"])
    np.testing.assert_allclose(grad, data["gradient"], rtol=0, atol=1e-5 * np.abs(data["gradient"]).max())


def test_silero_vad_explains_which_chunks_drive_speech():
    """silero-vad's trained LSTM VAD over 12 chunks of 32 ms with a voiced burst in chunks 4..8,
    under epsilon_plus (z⁺ on the convolutions, ε on the LSTM's linear maps).

    A chunk's speech probability draws relevance from that chunk and earlier ones only (a forward
    LSTM); inside the burst the chunk itself carries the most, and the hangover after the burst
    (chunk 10: silent, yet p > 0.9) is explained by the voiced chunks held in the LSTM's state."""
    data = np.load(FIXTURES / "silero_vad.npz")
    chunks, voiced = data["chunks"], data["voiced_chunks"]
    explainer = Explainer(FIXTURES / "silero_vad_sequence.onnx", composite="epsilon_plus")
    probs = explainer.explain(chunks, target=[0]).output[0]
    assert probs[voiced].min() > 0.8 and probs[:4].max() < 0.2 and probs[10] > 0.9
    for target in (5, 6):
        per_chunk = explainer.explain(chunks, target=[target]).relevance[0].sum(axis=1)
        assert not per_chunk[target + 1:].any()  # causal: later chunks get nothing
        assert per_chunk.argmax() == target
    per_chunk = explainer.explain(chunks, target=[10]).relevance[0].sum(axis=1)
    positive = np.maximum(per_chunk, 0)
    assert positive[voiced].sum() > 0.8 * positive.sum()


def test_cli_cell_epsilon_and_time_by_feature_heatmap(tmp_path, capsys):
    """--cell-epsilon reaches the cell updates (inspect lists it; explain conserves with 0), and the
    relevance file of a (T, F) input is (T, F)."""
    from onnx_lrp import cli

    model = FIXTURES / "LSTM_bi_legacy.onnx"
    assert cli.main(["inspect", str(model), "--cell-epsilon", "0.25"]) == 0
    assert "cell updates: 8 Add (cell) by Norm(stabilizer=0.25)" in capsys.readouterr().out
    x = np.load(FIXTURES / "LSTM_bi.npz")["x"][:1]
    np.save(tmp_path / "seq.npy", x)
    out = tmp_path / "out"
    assert cli.main([str(model), str(tmp_path / "seq.npy"), "--composite", "epsilon", "--cell-epsilon", "0",
                     "--out", str(out), "--quiet"]) == 0
    relevance = np.load(out / "seq.relevance.npy")
    assert relevance.shape[-2:] == (5, 3)
    header = (out / "seq.heatmap.png").read_bytes()[16:24]  # PNG IHDR: width, height
    assert (int.from_bytes(header[4:], "big"), int.from_bytes(header[:4], "big")) == (5, 3)  # rows: time


@pytest.mark.parametrize("op,exporter", list(itertools.product(["LSTM", "GRU"], ["legacy", "dynamo"])))
def test_stacked_bidirectional_layers(op, exporter):
    """nn.LSTM/nn.GRU(num_layers=2, bidirectional=True): two op nodes with the reshaping between
    them; the logits, conservation (no biases, ε = 0) and the gradient against torch's autograd."""
    data = np.load(FIXTURES / f"stacked_{op}.npz")
    path = FIXTURES / f"stacked_{op}_{exporter}.onnx"
    x, targets = data["x"], data["targets"]
    explanation = Explainer(path, composite="epsilon", epsilon=0.0, cell_epsilon=0.0).explain(x, target=targets)
    np.testing.assert_allclose(explanation.output, data["logits"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(explanation.conservation(), 1.0, rtol=0, atol=1e-4)
    grad = attributor(path).gradient(x, targets)
    np.testing.assert_allclose(grad, data["gradient"], rtol=0, atol=1e-5 * np.abs(data["gradient"]).max())
