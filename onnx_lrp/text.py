"""Explain text: a token-id model (BERT, MiniLM, a language model) with its HuggingFace tokenizer.

:class:`TextModel` turns a string into the model's inputs with a ``tokenizers`` tokenizer (the
``tokenizer.json`` that HuggingFace "fast" tokenizers save), feeds ``attention_mask``,
``token_type_ids`` and ``position_ids`` by the model's input names, and explains it with an
:class:`~onnx_lrp.Explainer`. Token ids are integers and carry no relevance, so the explanation
starts at the word-embedding output (the first floating-point tensor computed from the ids, what
LXT calls ``inputs_embeds``); a token's relevance is that relevance summed over the hidden
dimension, as LXT reports it (Achtibat et al., "AttnLRP", ICML 2024).

A sentence encoder is explained against another sentence with ``target_text``: the explained
quantity is the dot product ``e(text) · e(target_text)`` of the two embeddings, i.e. the target
weights are the other sentence's embedding computed by the same model (its explained output, one
vector per sentence, e.g. a mean-pooled last hidden state).

Which tokenizer (the command line): ``--tokenizer DIR|FILE``, else the file the model's
``onnx_lrp.tokenizer`` metadata names (a JSON object ``{"file": "NAME.tokenizer.json"}``, relative
to the model's directory), else ``tokenizer.json`` beside the model (as optimum's exports lay it
out). ``pip install 'onnx-lrp[text]'`` installs ``tokenizers`` (a wheel without torch).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InvalidInput, InvalidTarget, ModelLoadError
from .graph import FLOAT_TYPES

TOKENIZER_KEY = "onnx_lrp.tokenizer"
TOKENIZER_FILE = "tokenizer.json"
#: model input name -> which field of a tokenizers Encoding feeds it
FED_FROM_ENCODING = {"attention_mask": "attention_mask", "input_mask": "attention_mask",
                     "token_type_ids": "type_ids", "segment_ids": "type_ids", "position_ids": "positions"}


class TextError(InvalidInput):
    """Text cannot be explained: no tokenizer, a model without token ids, empty text, ..."""


# --- the tokenizer -------------------------------------------------------------------------------
def load_tokenizer(path):
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` or a directory holding one."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise TextError("explaining text needs the 'tokenizers' package; install it with "
                        "pip install 'onnx-lrp[text]'") from None
    path = Path(os.fspath(path))
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        where = f"directory {str(path)!r} holds no {TOKENIZER_FILE}" if path.is_dir() else \
            f"tokenizer {str(path)!r} does not exist"
        raise TextError(f"{where}; give the tokenizer.json that a HuggingFace fast tokenizer saves "
                        "(tokenizer.save_pretrained(DIR) writes DIR/tokenizer.json)")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises plain Exceptions for malformed files
        raise TextError(f"cannot read the tokenizer {str(file)!r} ({' '.join(str(exc).split())}); "
                        "give a HuggingFace tokenizer.json") from None


def tokenizer_path(model_path, props: dict, given=None) -> tuple[Path | None, str]:
    """Which tokenizer to use and why: ``given`` (a flag), else the model's ``onnx_lrp.tokenizer``
    metadata (relative to the model's directory), else ``tokenizer.json`` beside the model, else None."""
    if given is not None:
        return Path(os.fspath(given)), "given"
    here = Path(os.fspath(model_path)).parent
    if TOKENIZER_KEY in props:
        file = _metadata_file(props[TOKENIZER_KEY], str(model_path))
        path = here / file
        if not path.is_file():
            raise TextError(f"{str(model_path)!r} names its tokenizer {file!r} (metadata {TOKENIZER_KEY!r}) but "
                            f"{str(path)!r} does not exist; put it next to the model or pass --tokenizer")
        return path, f"named by the model's {TOKENIZER_KEY} metadata"
    beside = here / TOKENIZER_FILE
    if beside.is_file():
        return beside, "found next to the model"
    return None, ""


def _metadata_file(value: str, label: str) -> str:
    try:
        spec = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{label}: metadata {TOKENIZER_KEY!r} is not valid JSON ({exc})") from None
    file = spec.get("file") if isinstance(spec, dict) else None
    if not isinstance(file, str) or not file:
        raise ModelLoadError(f"{label}: metadata {TOKENIZER_KEY!r} must be a JSON object "
                             '{"file": "NAME.tokenizer.json"} naming a file beside the model')
    return file


# --- the model's inputs --------------------------------------------------------------------------
@dataclass
class EncodedText:
    """One text as the model takes it (a batch of 1).

    Attributes
    ----------
    text : the text
    tokens, ids : every position the model sees (padding included)
    real : bool (T,), the positions that are not padding
    inputs : the token-id input's name -> ids (1, T)
    feeds : the other inputs the model reads (mask, token types, positions) -> (1, T)
    truncated : the tokenizer cut the text to fit
    """

    text: str
    tokens: list[str]
    ids: np.ndarray
    real: np.ndarray
    inputs: dict
    feeds: dict
    truncated: bool = False


@dataclass
class TextExplanation:
    """Relevance of every token of one text (padding left out).

    Attributes
    ----------
    tokens, ids : the tokens the model saw, special tokens included
    relevance : ndarray (T,), the relevance at the word-embedding output summed over the hidden axis
    output : the explained value (the target output, or the dot product with ``target_text``'s embedding)
    target : dict describing what was explained (``kind``: ``class``, ``weights`` or ``text``)
    padding_relevance : the relevance that landed on padding positions (a fixed-length model's)
    explanation : the full :class:`~onnx_lrp.Explanation` (relevance per embedding dimension, padding included)
    encoded : the :class:`EncodedText`
    """

    tokens: list[str]
    ids: list[int]
    relevance: np.ndarray
    output: float
    target: dict
    padding_relevance: float
    explanation: object = field(repr=False)
    encoded: EncodedText = field(repr=False)

    @property
    def relevance_sum(self) -> float:
        return float(self.relevance.sum(dtype=np.float64))


class TextModel:
    """A token-id model and its tokenizer.

    Parameters
    ----------
    explainer : :class:`~onnx_lrp.Explainer` whose explained input holds token ids (integers)
    tokenizer : a ``tokenizers.Tokenizer``, or a path to ``tokenizer.json`` / a directory holding one
    """

    def __init__(self, explainer, tokenizer):
        self.explainer = explainer
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = load_tokenizer(tokenizer)
        name = explainer.input_name
        if explainer._elem[name] in FLOAT_TYPES or len(explainer.input_names) != 1:
            raise TextError(f"{explainer.label!r} has no integer token input to explain: its explained input "
                            f"{explainer.input_names!r} is floating point; text needs a model that takes token ids "
                            "(e.g. input_ids), see `onnx-lrp inspect MODEL`")
        shape = explainer._declared[name]
        if len(shape) != 2:
            raise TextError(f"input {name!r} of {explainer.label!r} has rank {len(shape)}; token ids are "
                            "(batch, sequence)")
        fixed = shape[1]
        #: the model's fixed sequence length (texts are padded and cut to it), or None
        self.sequence_length = fixed if isinstance(fixed, int) and fixed > 0 else None
        #: a copy of the tokenizer set to this model's length (the one given is left as it was)
        self.tokenizer = type(tokenizer).from_str(tokenizer.to_str())
        self._set_length(self.tokenizer)

    # --- encoding ---------------------------------------------------------------------------
    def encode(self, text: str, feeds: dict | None = None) -> EncodedText:
        """``text`` as the model's inputs; ``feeds`` gives inputs the tokenizer does not (by name)."""
        if not isinstance(text, str) or not text.strip():
            raise TextError("the text is empty; give a sentence (or a --text-file holding text)")
        encoding = self.tokenizer.encode(text)
        ids = np.array([encoding.ids], np.int64)
        real = np.array(encoding.attention_mask, bool)
        if not real.any():
            raise TextError(f"the tokenizer made no tokens of {text[:40]!r}")
        fields = {"attention_mask": encoding.attention_mask, "type_ids": encoding.type_ids,
                  "positions": list(range(len(encoding.ids)))}
        given = dict(feeds or {})
        out = {}
        for name in self.explainer.feed_names:
            if name in given:
                out[name] = given[name]
            elif name in FED_FROM_ENCODING:
                out[name] = np.array([fields[FED_FROM_ENCODING[name]]], np.int64)
            else:
                raise TextError(f"{self.explainer.label!r} also reads the input {name!r}, which the tokenizer does not "
                                f"give (it gives {sorted(FED_FROM_ENCODING)!r}); pass it with --feed {name}=FILE.npy "
                                "(Python: feeds=)")
        return EncodedText(text, list(encoding.tokens), ids[0], real, {self.explainer.input_name: ids}, out,
                           truncated=bool(encoding.overflowing))

    def _set_length(self, tokenizer) -> None:
        """Pad and cut to a fixed sequence length; otherwise no padding (one text is its own batch)."""
        if self.sequence_length is None:
            tokenizer.no_padding()
            return
        pad = tokenizer.padding or {}
        pad_token = pad.get("pad_token") or "[PAD]"
        pad_id = pad.get("pad_id", tokenizer.token_to_id(pad_token) or 0)
        tokenizer.enable_padding(length=self.sequence_length, pad_id=pad_id, pad_token=pad_token,
                                 pad_type_id=pad.get("pad_type_id", 0), direction=pad.get("direction", "right"))
        tokenizer.enable_truncation(self.sequence_length)

    # --- explaining -------------------------------------------------------------------------
    def embed(self, text: str, feeds: dict | None = None) -> np.ndarray:
        """The explained output of ``text``: one vector for a sentence encoder, e.g. (384,)."""
        encoded = self.encode(text, feeds)
        return self._vector(self._run(encoded, 0).output, "target_text")

    def explain(self, text: str, target=None, target_text: str | None = None,
                feeds: dict | None = None) -> TextExplanation:
        """Relevance of each token of ``text`` for ``target`` (as :meth:`Explainer.explain` takes it:
        None the prediction, an index, a tuple, float weights), or with ``target_text`` for the dot
        product of the two texts' embeddings."""
        encoded = self.encode(text, feeds)
        if target_text is not None:
            if target is not None:
                raise InvalidTarget("give target or target_text, not both")
            other = self.embed(target_text, feeds)
            result = self._run(encoded, other)
            mine = self._vector(result.output, "target_text")
            norms = float(np.linalg.norm(mine) * np.linalg.norm(other))
            dot = float(result.target_output[0])
            described = {"kind": "text", "text": target_text, "dot": dot,
                         "cosine": dot / norms if norms else None}
        else:
            result = self._run(encoded, target)
            described = _describe(result, target, self.explainer.labels)
        real, per_token = encoded.real, self.token_relevance(result, encoded)
        return TextExplanation([t for t, keep in zip(encoded.tokens, real) if keep], encoded.ids[real].tolist(),
                               per_token[real], float(result.target_output[0]), described,
                               float(per_token[~real].sum()), result, encoded)

    def token_relevance(self, result, encoded: EncodedText) -> np.ndarray:
        """Relevance per position (T,): the relevance at the word-embedding output summed over its
        hidden axis. Refuses a model whose ids reach no (batch, sequence, hidden) float tensor first."""
        relevance = result.relevance
        source = result.sources.get(self.explainer.input_name)
        if relevance.ndim != 3 or relevance.shape[:2] != (1, len(encoded.ids)):
            raise TextError(f"the relevance of {self.explainer.input_name!r} is given at {source!r}, shaped "
                            f"{relevance.shape}, not one vector per token (1, {len(encoded.ids)}, hidden); "
                            "explain it with the Python API (Explanation.relevance)")
        return relevance[0].sum(axis=-1, dtype=np.float64)

    def _run(self, encoded: EncodedText, target):
        return self.explainer.explain(encoded.inputs[self.explainer.input_name], target=target,
                                      feeds=encoded.feeds or None)

    def _vector(self, output: np.ndarray, what: str) -> np.ndarray:
        if output.ndim != 2:
            raise TextError(f"{what} explains the similarity of two sentence embeddings, but output "
                            f"{self.explainer.output_name!r} of {self.explainer.label!r} is shaped {output.shape}, "
                            "not one vector per text; choose a pooled output with --output NAME (Python: output=)")
        return output[0].astype(np.float32)


def _describe(result, target, labels) -> dict:
    if result.weights is not None:
        return {"kind": "weights"}
    index = int(result.target[0])
    predicted = int(result.prediction[0])

    def label(k):
        return labels[k] if labels is not None and 0 <= k < len(labels) else None

    return {"kind": "class", "index": index, "label": label(index), "predicted": predicted,
            "predicted_label": label(predicted), "predicted_output": float(result.output.reshape(-1)[predicted])}
