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


# --- PaddleOCR PP-OCRv4 recogniser from rapidocr-onnxruntime (tools/make_ppocr_fixture.py) -------------

PPOCR = THIRDPARTY / "ch_PP-OCRv4_rec_infer.onnx"


@pytest.fixture(scope="module")
def ppocr():
    """The recogniser's characters (CTC blank first, space last, as rapidocr builds them from the
    model's metadata), the rendered text lines with rapidocr's reading, and a cp_lrp explainer."""
    meta = {p.key: p.value for p in onnx.load(str(PPOCR), load_external_data=False).metadata_props}
    characters = ["<blank>"] + meta["character"].splitlines() + [" "]
    return characters, dict(np.load(THIRDPARTY / "ppocr_rec_samples.npz")), onnx_lrp.Explainer(PPOCR, composite="cp_lrp")


def ctc_path(logits: np.ndarray) -> list[tuple[int, int]]:
    """Greedy CTC decoding as rapidocr does it: (time step, class) of each emitted character, the
    first of a run of equal classes, blanks (class 0) dropped."""
    best = logits.argmax(-1)
    emitted = np.r_[True, best[1:] != best[:-1]] & (best != 0)
    return [(int(t), int(best[t])) for t in np.flatnonzero(emitted)]


def path_weights(logits: np.ndarray, rows: list[list[tuple[int, int]]]) -> np.ndarray:
    """Target weights: 1 at each (time step, class) of a row's path, so relevance explains their summed logits."""
    weights = np.zeros((len(rows),) + logits.shape[1:], np.float32)
    for row, path in enumerate(rows):
        for t, c in path:
            weights[row, t, c] = 1.0
    return weights


def _logits_from_onnxruntime(x: np.ndarray) -> np.ndarray:
    """The recogniser's logits (its final Softmax's input), from a plain onnxruntime run of the file."""
    from model_builders import run
    model = onnx.load(str(PPOCR))
    logits = model.graph.node[-1].input[0]
    model.graph.output.append(onnx.ValueInfoProto(name=logits))
    return run(model, {"x": x})[logits]


def test_ppocr_text_lines_read_as_rapidocr_reads_them_and_explained(ppocr):
    """paddle2onnx's SVTR attention slices q, k and v off axis 0 of a (3, N, heads, L, d) tensor: the
    batch is on axis 1 there (read off probes at two batch sizes), so that Slice keeps the samples
    apart. The explained output is onnxruntime's, its CTC reading is rapidocr's, the relevance of
    the summed logits along the decoded path is finite and a sample explained alone gets the same."""
    characters, samples, explainer = ppocr
    x = samples["x"]
    logits = _logits_from_onnxruntime(x)
    paths = [ctc_path(row) for row in logits]
    res = explainer.explain(x, target=path_weights(logits, paths))
    assert any("trailing Softmax" in note for note in explainer.notes)
    np.testing.assert_allclose(res.output, logits, rtol=0, atol=2e-4 * np.abs(logits).max())
    read = ["".join(characters[c] for _, c in ctc_path(row)) for row in res.output]
    assert read == list(samples["read"])  # rapidocr 1.4.4's TextRecognizer on the same images
    assert res.relevance.shape == (2, 3, 48, 320) and np.isfinite(res.relevance).all()
    alone = explainer.explain(x[1:], target=path_weights(logits[1:], paths[1:]))
    np.testing.assert_allclose(alone.relevance[0], res.relevance[1], rtol=1e-4, atol=1e-5 * np.abs(res.relevance).max())
    padding = x[0] == 0  # right of the rendered line (grey after normalisation): x ⊙ … is 0 there
    assert padding.any() and (res.relevance[0][padding] == 0).all()


def test_ppocr_each_character_is_explained_by_its_own_glyph(ppocr):
    """Under cp_lrp, the logit of a character the recogniser emits at one time step draws most of its
    relevance from that character's glyph: summed over each rendered glyph's columns, its own glyph
    has the most (five characters of 'Relevance 2024' across the line; tools/make_ppocr_fixture.py
    lists all)."""
    characters, samples, explainer = ppocr
    x, text, glyphs = samples["x"][:1], str(samples["text"][0]), samples["glyphs"][0]
    drawn = [i for i, ch in enumerate(text) if ch != " "]
    path = [step for step in ctc_path(_logits_from_onnxruntime(x)[0]) if characters[step[1]] != " "]
    assert len(path) == len(drawn)
    chosen = [0, 3, 6, 9, 12]  # R, e, n, 2, 4
    weights = path_weights(np.zeros((1, 40, len(characters))), [[path[k]] for k in chosen])
    res = explainer.explain(np.repeat(x, len(chosen), axis=0), target=weights)
    per_column = res.relevance.sum(axis=(1, 2))
    for row, k in enumerate(chosen):
        per_glyph = [per_column[row, glyphs[i, 0]:glyphs[i, 1]].sum() for i in drawn]
        assert int(np.argmax(per_glyph)) == k, (text[drawn[k]], per_glyph)


def _ppocr_report():
    """tools/ppocr_report.py, whose ``without_biases`` this test shares (it needs no torch)."""
    import importlib.util
    path = pathlib.Path(__file__).resolve().parent.parent / "tools" / "ppocr_report.py"
    spec = importlib.util.spec_from_file_location("ppocr_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _zero_constants(model: onnx.ModelProto) -> int:
    from onnx import numpy_helper
    tensors = [n.attribute[0].t for n in model.graph.node if n.op_type == "Constant"] + list(model.graph.initializer)
    return sum(1 for t in tensors if t.data_type == onnx.TensorProto.FLOAT and not numpy_helper.to_array(t).any())


def test_ppocr_conserves_under_cp_lrp_once_every_bias_is_zero(ppocr):
    """cp_lrp with ε = 0 conserves on this graph except where biases absorb: with the
    convolutions' and dense layers' biases, BatchNorm's shift, the learnable affine blocks' offsets
    and LayerNorm's β set to zero (hard-swish's +3 and LayerNorm's ε kept), Σ relevance equals the
    explained logit. The trained model keeps ~0.3 of its decoded path's logits (the rest goes to
    biases)."""
    model = _ppocr_report().without_biases(onnx.load(str(PPOCR)))
    assert _zero_constants(model) - _zero_constants(onnx.load(str(PPOCR))) > 100
    x = ppocr[1]["x"][:1]
    res = onnx_lrp.Explainer(model, composite="cp_lrp").explain(x, target=(15, 3332))
    np.testing.assert_allclose(res.conservation(), 1.0, rtol=0, atol=1e-5)
