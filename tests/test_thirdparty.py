"""Trained models that other PyPI packages ship, explained end to end (tools/make_magika_fixture.py)."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import onnx
import pytest

import onnx_lrp

THIRDPARTY = pathlib.Path(__file__).parent / "fixtures" / "thirdparty"


@pytest.fixture(scope="module")
def magika():
    path = THIRDPARTY / "magika_standard_v3_3.onnx"
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return path, json.loads(meta["onnx_lrp.labels"]), dict(np.load(THIRDPARTY / "magika_samples.npz"))


def test_magika_bytes_explained_from_their_one_hot_encoding(magika):
    """Integer input (bytes, padded with 256): the explanation starts at the one-hot encoding the
    graph computes (Equal + Cast), the written-out softmax is stripped, LayerNorm's written-out
    moments are statistics (held constant), the batch slice written with end 10⁹ keeps the batch."""
    path, labels, samples = magika
    explainer = onnx_lrp.Explainer(path, composite="epsilon")
    assert explainer.input_names == ["bytes"]
    assert any("Exp / ReduceSum / Div" in note for note in explainer.notes)
    x = np.concatenate([samples["python"], samples["json"]])
    res = explainer.explain(x)
    assert [labels[i] for i in res.prediction] == ["python", "json"]
    assert res.sources["bytes"].endswith("one_hot_/Cast_1:0")
    assert res.relevance.shape == (2, 2048, 257)
    onehot = np.eye(257, dtype=bool)[x]
    assert np.isfinite(res.relevance).all()
    assert (res.relevance[~onehot] == 0).all(), "bytes absent at a position get no relevance"
    per_byte = res.per_position()
    assert per_byte.shape == (2, 2048)
    # the relevance explains most of the logit; the rest goes to biases and LayerNorm's β
    assert np.all(res.conservation() > 0.5) and np.all(res.conservation() < 2)
    # padding carries less relevance than the content bytes
    content = x != 256
    assert np.abs(per_byte[content]).mean() > 10 * np.abs(per_byte[~content]).mean()


def test_inspect_shows_where_the_explanation_of_bytes_starts(magika):
    from onnx_lrp.inspection import inspect_model
    report = inspect_model(magika[0], input_shape=(1, 2048))
    assert any("'bytes'" in note and "starts at" in note and "one_hot_/Cast_1:0" in note for note in report.notes)
    assert not [row for row in report.rows if row.status in ("unsupported", "needs rule")]


def test_silero_vad_with_its_state_fed_along_its_batch_axis():
    """silero-vad's streaming model (tools/make_silero_fixture.py): the audio is explained, the
    recurrent state (2, batch, 128) is fed — split along axis 1, where its batch is — and the three
    If nodes the LSTM export adds (they test the state's and the input's shapes) are inlined at
    compile time; sr is accepted and unused (the probability does not read it)."""
    path = THIRDPARTY / "silero_vad_16k_op15.onnx"
    data = np.load(pathlib.Path(__file__).parent / "fixtures" / "recurrent" / "silero_vad.npz")
    x = np.ascontiguousarray(data["chunks"][0, :, 64:])  # twelve 512-sample chunks at 16 kHz
    explainer = onnx_lrp.Explainer(path, input_name="input", output_name="output", composite="epsilon")
    assert explainer.feed_names == ["state"]
    state = np.zeros((2, len(x), 128), np.float32)
    res = explainer.explain(x, target=0, feeds={"state": state, "sr": np.array(16000)})
    assert res.relevance.shape == (12, 512) and np.isfinite(res.relevance).all()
    assert "If" not in {n.op_type for n in explainer.graph({"input": (512,), "state": (2, 128)}).model.graph.node}
    from model_builders import run
    expected = run(onnx.load(str(path)), {"input": x, "state": state, "sr": np.array(16000)})["output"]
    np.testing.assert_allclose(res.output, expected, rtol=1e-5, atol=1e-7)  # the model's own output
    chunked = explainer.explain(x, target=0, feeds={"state": state}, batch_size=5)
    np.testing.assert_allclose(chunked.relevance, res.relevance, rtol=1e-5, atol=1e-7)
    with pytest.raises(onnx_lrp.InvalidInput, match="batch on axis 1"):
        explainer.explain(x, target=0, feeds={"state": state[:, :3]})
