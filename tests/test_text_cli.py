"""The text command end to end: ``onnx-lrp MODEL "a sentence" --tokenizer tokenizer.json``.

Models: ``fixtures/text/bert_text.onnx`` (a seeded 1-layer BERT taking input_ids, attention_mask and
token_type_ids with a free sequence axis, mean-pooled to a sentence embedding;
tools/make_text_fixture.py) and ``fixtures/attnlrp/bert_ids__torchscript.onnx`` (fixed length 8,
the [CLS] hidden state; texts are padded and cut to it). The tokenizer is built here with the
``tokenizers`` library from a tiny word vocabulary. Each CLI result is checked against the Python
API (:class:`onnx_lrp.Explainer` on the ids) and onnxruntime, not against the text module itself.
"""
from __future__ import annotations

import json
import pathlib
import re
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

import onnx_lrp
from onnx_lrp import cli
from onnx_lrp.terminal import tokens_text, use_colour

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
ENCODER = FIXTURES / "text" / "bert_text.onnx"
FIXED = FIXTURES / "attnlrp" / "bert_ids__torchscript.onnx"  # input_ids, attention_mask: (1, 8)
FLOAT_MODEL = FIXTURES / "attnlrp" / "bert__torchscript.onnx"  # inputs_embeds (float)
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", "a", "kitten", "sleeps", "rug",
         "dog", "barks", "<script>", "&", "warm", "because", "it", "was"]
SENTENCE = "The cat sat on the mat"
OTHER = "a kitten sleeps on the rug"


def make_tokenizer() -> Tokenizer:
    """Lower-cased words split at whitespace, [CLS] ... [SEP] around them; ids < 64 (the models' vocabulary)."""
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return tokenizer


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    make_tokenizer().save(str(path))
    return path


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ids_of(text: str, length: int | None = None) -> dict:
    """The model inputs of ``text``, made here from the word list (padded with [PAD] = 0 to ``length``)."""
    ids = [2] + [WORDS.index(w) if w in WORDS else 1 for w in text.lower().split()] + [3]
    mask = [1] * len(ids)
    if length is not None:
        ids, mask = (ids + [0] * length)[:length], (mask + [0] * length)[:length]
    return {"input_ids": np.array([ids], np.int64), "attention_mask": np.array([mask], np.int64),
            "token_type_ids": np.zeros((1, len(ids)), np.int64)}


def api_relevance(model, inputs: dict, target) -> tuple[np.ndarray, object]:
    """Relevance per position through the API: at the word-embedding output, summed over its hidden axis."""
    explainer = onnx_lrp.Explainer(model, composite="attnlrp")
    feeds = {k: v for k, v in inputs.items() if k in explainer.feed_names}
    result = explainer.explain(inputs["input_ids"], target=target, feeds=feeds)
    assert result.relevance.shape[:2] == inputs["input_ids"].shape and result.relevance.ndim == 3
    assert "word_embeddings" in result.sources["input_ids"]
    return result.relevance[0].sum(axis=-1), result


def embedding(model, inputs: dict) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {k: v for k, v in inputs.items() if k in names})[0][0]


def printed_tokens(out: str) -> list[tuple[str, float]]:
    return [(t, float(v)) for t, v in re.findall(r"(\S+?)\(([+-][0-9.e+-]+)\)", out)]


# --- a sentence ----------------------------------------------------------------------------------
def test_sentence_prints_tokens_and_writes_json_and_html_equal_to_the_api(capsys, tmp_path, tokenizer_file):
    code, out, err = run(capsys, ENCODER, SENTENCE, "--tokenizer", tokenizer_file, "--out", tmp_path)
    assert code == 0, err
    doc = json.loads((tmp_path / "the-cat-sat-on-the-mat.json").read_text())
    tokens = ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]
    assert doc["tokens"] == tokens and doc["text"] == SENTENCE and doc["composite"] == "attnlrp"
    inputs = ids_of(SENTENCE)
    assert doc["ids"] == inputs["input_ids"][0].tolist()
    expected, result = api_relevance(ENCODER, inputs, None)
    np.testing.assert_allclose(doc["relevance"], expected, rtol=1e-5, atol=1e-7)
    assert doc["target"]["kind"] == "class" and doc["target"]["index"] == int(result.prediction[0])
    np.testing.assert_allclose(doc["output"], result.target_output[0], rtol=1e-6)
    assert doc["relevance_sum"] == pytest.approx(float(np.sum(expected)), rel=1e-5)
    # printed: every token with its relevance, in order (not a terminal: numbers, no colour codes)
    shown = printed_tokens(out)
    assert [t for t, _ in shown] == tokens and "\x1b[" not in out
    np.testing.assert_allclose([v for _, v in shown], expected, rtol=6e-3, atol=1e-12)
    page = (tmp_path / "the-cat-sat-on-the-mat.tokens.html").read_text()
    assert page.count("<span style=\"background:rgb(") == len(tokens) and "linear-gradient" in page
    assert "wrote " in out and "tokens.html" in out


def test_target_text_explains_the_dot_product_with_the_other_sentences_embedding(capsys, tmp_path, tokenizer_file):
    code, out, err = run(capsys, ENCODER, SENTENCE, "--target-text", OTHER, "--tokenizer", tokenizer_file,
                         "--out", tmp_path, "--json")
    assert code == 0, err
    doc = json.loads(out)
    other = embedding(ENCODER, ids_of(OTHER))  # onnxruntime on the model itself
    mine = embedding(ENCODER, ids_of(SENTENCE))
    expected, result = api_relevance(ENCODER, ids_of(SENTENCE), other)  # the other embedding as target weights
    np.testing.assert_allclose(doc["relevance"], expected, rtol=1e-5, atol=1e-7)
    assert doc["target"]["kind"] == "text" and doc["target"]["text"] == OTHER
    assert doc["target"]["dot"] == pytest.approx(float(mine @ other), rel=1e-5)
    assert doc["output"] == pytest.approx(float(mine @ other), rel=1e-5)
    cosine = float(mine @ other / np.linalg.norm(mine) / np.linalg.norm(other))
    assert doc["target"]["cosine"] == pytest.approx(cosine, rel=1e-5)
    assert json.loads((tmp_path / "the-cat-sat-on-the-mat.json").read_text()) == doc


def test_a_token_like_script_stays_text_in_the_page(capsys, tmp_path, tokenizer_file):
    code, _, err = run(capsys, ENCODER, "the <script> & cat", "--tokenizer", tokenizer_file, "--out", tmp_path)
    assert code == 0, err
    doc = json.loads((tmp_path / "the-script-cat.json").read_text())
    assert doc["tokens"] == ["[CLS]", "the", "<script>", "&", "cat", "[SEP]"]
    page = (tmp_path / "the-script-cat.tokens.html").read_text()
    assert "<script" not in page and "&lt;script&gt;" in page and "&amp;</span>" in page


def test_fixed_length_model_pads_and_cuts_the_text(capsys, tmp_path, tokenizer_file):
    code, out, err = run(capsys, FIXED, "the cat sat", "--tokenizer", tokenizer_file, "--out", tmp_path,
                         "--target", "3", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["tokens"] == ["[CLS]", "the", "cat", "sat", "[SEP]"]  # padding is not shown
    inputs = ids_of("the cat sat", length=8)
    expected, _ = api_relevance(FIXED, inputs, 3)
    np.testing.assert_allclose(doc["relevance"], expected[:5], rtol=1e-5, atol=1e-7)
    assert doc["padding_relevance"] == pytest.approx(float(expected[5:].sum()), rel=1e-4, abs=1e-9)
    assert doc["target"]["index"] == 3
    code, out, err = run(capsys, FIXED, "the cat sat on the mat because it was warm", "--tokenizer", tokenizer_file,
                         "--out", tmp_path, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc["tokens"]) == 8 and doc["truncated"] and any("cut the text" in n for n in doc["notes"])


def test_text_file_and_the_tokenizer_named_by_the_model(capsys, tmp_path):
    model = onnx.load(str(ENCODER))
    model.metadata_props.add(key="onnx_lrp.tokenizer", value=json.dumps({"file": "words.tokenizer.json"}))
    onnx.save(model, str(tmp_path / "encoder.onnx"))
    make_tokenizer().save(str(tmp_path / "words.tokenizer.json"))
    (tmp_path / "review.txt").write_text(SENTENCE + "\n", encoding="utf-8")
    code, out, err = run(capsys, tmp_path / "encoder.onnx", "--text-file", tmp_path / "review.txt",
                         "--out", tmp_path / "out")
    assert code == 0, err
    assert "onnx_lrp.tokenizer metadata" in out
    doc = json.loads((tmp_path / "out" / "review.json").read_text())
    np.testing.assert_allclose(doc["relevance"], api_relevance(ENCODER, ids_of(SENTENCE), None)[0], rtol=1e-5,
                               atol=1e-7)
    # a tokenizer.json beside the model is found too (as optimum lays exports out)
    shutil.copyfile(ENCODER, tmp_path / "plain.onnx")
    shutil.move(tmp_path / "words.tokenizer.json", tmp_path / "tokenizer.json")
    code, out, err = run(capsys, tmp_path / "plain.onnx", SENTENCE, "--out", tmp_path / "out", "-q")
    assert (code, out, err) == (0, "", "")


# --- errors --------------------------------------------------------------------------------------
def test_no_tokenizer_is_a_clear_error(capsys, tmp_path):
    shutil.copyfile(ENCODER, tmp_path / "encoder.onnx")
    code, out, err = run(capsys, tmp_path / "encoder.onnx", SENTENCE, "--out", tmp_path)
    assert code == 1 and out == ""
    assert err.startswith("onnx-lrp: error: no tokenizer for") and "--tokenizer" in err and err.count("\n") == 1
    code, _, err = run(capsys, ENCODER, SENTENCE, "--tokenizer", tmp_path / "none.json", "--out", tmp_path)
    assert code == 1 and "does not exist" in err and "tokenizer.json" in err


def test_a_model_without_token_ids_is_refused(capsys, tmp_path, tokenizer_file):
    code, _, err = run(capsys, FLOAT_MODEL, SENTENCE, "--tokenizer", tokenizer_file, "--out", tmp_path)
    assert code == 1 and "takes no token ids" in err and "'inputs_embeds'" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv,message", [
    (["", "--tokenizer", "{tok}"], "the text is empty"),
    (["   ", "--tokenizer", "{tok}"], "the text is empty"),
    (["--text-file", "{empty}", "--tokenizer", "{tok}"], "holds no text"),
    ([SENTENCE, "--target-text", " ", "--tokenizer", "{tok}"], "--target-text is empty"),
])
def test_empty_text_is_refused(capsys, tmp_path, tokenizer_file, argv, message):
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    argv = [a.format(tok=tokenizer_file, empty=tmp_path / "empty.txt") for a in argv]
    code, _, err = run(capsys, ENCODER, *argv, "--out", tmp_path)
    assert code == 1 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("extra,message", [
    (["--target", "3", "--target-text", OTHER], "give one"),
    (["--size", "8", "8"], "--size is for arrays and images"),
    (["--text-file", "x.txt"], "not both"),
])
def test_usage_errors(capsys, tmp_path, tokenizer_file, extra, message):
    code, _, err = run(capsys, ENCODER, SENTENCE, "--tokenizer", tokenizer_file, "--out", tmp_path, *extra)
    assert code == 2 and message in err


def test_a_file_as_text_input_points_to_text_file(capsys, tmp_path, tokenizer_file):
    (tmp_path / "notes.txt").write_text(SENTENCE, encoding="utf-8")
    code, _, err = run(capsys, ENCODER, tmp_path / "notes.txt", "--tokenizer", tokenizer_file, "--out", tmp_path)
    assert code == 2 and "--text-file" in err


def test_control_characters_in_tokens_do_not_reach_the_terminal():
    assert tokens_text(["a\x1b[2Jb"], [1.0], colour=False) == "a\\x1b[2Jb(+1)"
    assert "\x1b[2J" not in tokens_text(["a\x1b[2Jb"], [1.0], colour=True)


def test_target_text_needs_one_vector_per_text(capsys, tmp_path, tokenizer_file):
    hidden = next(n.output[0] for n in onnx.load(str(ENCODER)).graph.node
                  if n.op_type == "LayerNormalization" and "output/LayerNorm" in n.name)  # the last hidden state
    code, _, err = run(capsys, ENCODER, SENTENCE, "--target-text", OTHER, "--output", hidden,
                       "--tokenizer", tokenizer_file, "--out", tmp_path)
    assert code == 1 and "not one vector per text" in err and "--output" in err


# --- the terminal --------------------------------------------------------------------------------
def test_colours_red_for_positive_and_blue_for_negative():
    text = tokens_text(["for", "zero", "against"], [2.0, 0.0, -2.0], colour=True)
    assert "\x1b[48;2;255;0;0m\x1b[38;2;255;255;255mfor\x1b[0m" in text
    assert "\x1b[48;2;255;255;255m\x1b[38;2;0;0;0mzero\x1b[0m" in text
    assert "\x1b[48;2;0;0;255m\x1b[38;2;255;255;255magainst\x1b[0m" in text  # white ink on dark blue
    assert tokens_text(["for", "against"], [2.0, -0.5], colour=False) == "for(+2) against(-0.5)"


def test_colour_only_on_a_terminal_without_no_color(monkeypatch):
    class Terminal:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Terminal()) and not use_colour(object())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Terminal())


# --- the trained sentence encoder of the README (built locally; ~90 MB, not in CI) -------------------
MINILM = pathlib.Path(__file__).parents[1] / "build" / "minilm" / "all-MiniLM-L6-v2.onnx"
PHONE = "The new phone has a great camera but the battery dies quickly."
PHOTOS = "This smartphone takes excellent photos."


@pytest.mark.skipif(not MINILM.is_file(), reason="all-MiniLM-L6-v2 not built (python tools/build_minilm.py)")
def test_readme_minilm_similarity(capsys, tmp_path):
    code, out, err = run(capsys, MINILM, PHONE, "--target-text", PHOTOS, "--out", tmp_path, "--json")
    assert code == 0, err
    doc = json.loads(out)
    tokenizer = Tokenizer.from_file(str(MINILM.with_name("all-MiniLM-L6-v2.tokenizer.json")))
    tokenizer.no_padding()

    def inputs(text):
        e = tokenizer.encode(text)
        return {"input_ids": np.array([e.ids]), "attention_mask": np.array([e.attention_mask]),
                "token_type_ids": np.array([e.type_ids])}

    assert doc["tokens"] == tokenizer.encode(PHONE).tokens
    expected, _ = api_relevance(MINILM, inputs(PHONE), embedding(MINILM, inputs(PHOTOS)))
    np.testing.assert_allclose(doc["relevance"], expected, rtol=1e-4, atol=1e-6)
    top = [doc["tokens"][i] for i in np.argsort(doc["relevance"])[::-1][:2]]
    assert sorted(top) == ["camera", "phone"]
