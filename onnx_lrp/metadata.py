"""How a model wants its inputs: the ``onnx_lrp.*`` metadata convention, read and checked.

Any ONNX model can carry these entries in its ``metadata_props``; onnx-lrp then turns an image
file into the model's input and names its classes without any flags::

    import json, onnx
    model = onnx.load("model.onnx")
    model.metadata_props.add(key="onnx_lrp.preprocess", value=json.dumps({
        "size": [224, 224], "layout": "nchw", "scale": 255.0,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "channels": "rgb"}))
    model.metadata_props.add(key="onnx_lrp.labels", value=json.dumps(["cat", "dog"]))
    onnx.save(model, "model.onnx")

Keys
----
``onnx_lrp.preprocess``
    A JSON object; every field is optional (defaults below):

    ``size``      ``[H, W]``: images are resized to H×W pixels (default: the model's static input
                  size, else the image's own size).
    ``layout``    ``"nchw"``, ``"nhwc"`` or ``"flat"`` (one row of H·W·C values, row-major over
                  H, W, C); default from the model's input rank and channel axis.
    ``scale``     pixels (0–255) are divided by it first; default 1 (no scaling).
    ``mean``      per channel (or one value for all), subtracted after scaling; default 0.
    ``std``       per channel (or one value for all), divided by last; default 1.
    ``channels``  ``"rgb"``, ``"bgr"`` or ``"gray"`` (one channel); default ``"rgb"``.

    so ``x = ((pixels / scale) - mean) / std`` per channel, laid out as ``layout`` with a leading
    batch axis. Unknown fields are ignored.
``onnx_lrp.labels``
    A JSON list of class names; index ``i`` names output column ``i``.
``onnx_lrp.tokenizer``
    A JSON object ``{"file": "NAME.tokenizer.json"}``: the HuggingFace tokenizer of a model that
    takes token ids, a file in the model's directory (read by :mod:`onnx_lrp.text`).

Command-line flags (``--size``, ``--layout``, ``--scale``, ``--mean``, ``--std``, ``--channels``,
``--labels``) override the metadata field by field.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from .errors import CompositeError, ModelLoadError

PREPROCESS_KEY = "onnx_lrp.preprocess"
LABELS_KEY = "onnx_lrp.labels"
LAYOUTS = ("nchw", "nhwc", "flat")
CHANNELS = ("rgb", "bgr", "gray")
PIXEL_MIN, PIXEL_MAX = 0.0, 255.0


class MetadataError(ModelLoadError):
    """A model's ``onnx_lrp.*`` metadata (or a labels file) is malformed."""


@dataclass(frozen=True)
class Preprocess:
    """Image preprocessing: ``x = ((pixels / scale) - mean) / std`` per channel, laid out as ``layout``.

    ``None`` fields are not known yet (neither metadata nor flags gave them); see :meth:`resolved`.
    ``given`` lists the fields that came from the metadata or flags rather than defaults.
    """

    size: tuple[int, int] | None = None
    layout: str | None = None
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channels: str = "rgb"
    given: frozenset = field(default_factory=frozenset)

    @property
    def num_channels(self) -> int:
        return 1 if self.channels == "gray" else 3

    @property
    def normalises(self) -> bool:
        """Whether scale/mean/std were stated (so the range of the model's input is known)."""
        return bool({"scale", "mean", "std"} & self.given)

    def per_channel(self, values: tuple[float, ...], name: str) -> np.ndarray:
        """``mean`` or ``std`` as one float32 value per channel."""
        if len(values) == 1:
            return np.full(self.num_channels, values[0], np.float32)
        if len(values) != self.num_channels:
            raise MetadataError(f"the preprocessing {name} has {len(values)} values but channels {self.channels!r} "
                                f"means {self.num_channels}; pass --{name} with "
                                + ("1 value" if self.num_channels == 1 else f"1 or {self.num_channels} values"))
        return np.asarray(values, np.float32)

    def input_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest model input per channel: pixels 0 and 255 mapped through scale, mean, std."""
        mean, std = self.per_channel(self.mean, "mean"), self.per_channel(self.std, "std")
        lo = (np.float32(PIXEL_MIN / self.scale) - mean) / std
        hi = (np.float32(PIXEL_MAX / self.scale) - mean) / std
        return np.minimum(lo, hi), np.maximum(lo, hi)  # a negative std swaps them

    def box_bounds(self, low=None, high=None, label="the model") -> dict:
        """``low``/``high`` for epsilon_gamma_box's ZBox rule: the values given (one, or one per
        channel), else pixels 0 and 255 through this preprocessing, laid out for one sample."""
        if low is None or high is None:
            if not self.normalises:
                raise CompositeError(
                    "composite epsilon_gamma_box needs --low and --high (Python: low=, high=), the lowest and "
                    f"highest input values, and {str(label)!r} has no onnx_lrp.preprocess scale/mean/std to derive "
                    "them from; pass e.g. --low 0 --high 1")
            lo, hi = self.input_range()
            low = lo if low is None else low
            high = hi if high is None else high
        return {"low": self._channel_array(low, "low"), "high": self._channel_array(high, "high")}

    def _channel_array(self, values, name: str):
        v = np.asarray(values, np.float32).reshape(-1)
        if v.size == 1 or np.all(v == v[0]):
            return float(v[0])
        if self.layout == "nchw":
            return v.reshape(1, -1, 1, 1)
        if self.layout == "nhwc":
            return v.reshape(1, 1, 1, -1)
        if self.layout == "flat" and self.size is not None:
            return np.tile(v, self.size[0] * self.size[1]).reshape(1, -1)
        raise CompositeError(f"--{name} has {v.size} values (one per channel) but the input layout is unknown; pass "
                             "one value, or --layout (and --size for flat inputs)")

    def override(self, **values) -> "Preprocess":
        """A copy with the given (non-None) fields replaced and checked, marked as given."""
        values = {k: v for k, v in values.items() if v is not None}
        if not values:
            return self
        checked = _check_fields(values, None)
        return replace(self, **checked, given=self.given | frozenset(checked))

    def to_json(self) -> dict:
        return {"size": list(self.size) if self.size else None, "layout": self.layout, "scale": self.scale,
                "mean": list(self.mean), "std": list(self.std), "channels": self.channels}


@dataclass(frozen=True)
class ModelMetadata:
    """What a model's ``metadata_props`` say about its inputs and classes."""

    preprocess: Preprocess
    labels: list[str] | None = None
    props: dict[str, str] = field(default_factory=dict)

    @property
    def has_preprocess(self) -> bool:
        return PREPROCESS_KEY in self.props


def read_model_proto(path) -> onnx.ModelProto:
    """The model's protobuf without its external weights (enough for metadata and input shapes)."""
    from .graph import read_model

    proto = read_model(path, external_data=False)
    if not proto.graph.node:
        raise ModelLoadError(f"{str(path)!r} holds no graph nodes; is it a complete ONNX model file?")
    return proto


def from_proto(proto: onnx.ModelProto, label: str = "the model") -> ModelMetadata:
    """Read and check the ``onnx_lrp.*`` entries of a model."""
    props = {p.key: p.value for p in proto.metadata_props}
    preprocess = Preprocess()
    if PREPROCESS_KEY in props:
        spec = _json(props[PREPROCESS_KEY], PREPROCESS_KEY, label)
        if not isinstance(spec, dict):
            raise MetadataError(f"{label}: metadata {PREPROCESS_KEY!r} must be a JSON object, got "
                                f"{type(spec).__name__}; see onnx_lrp.metadata for the keys")
        known = {k: v for k, v in spec.items() if k in _FIELDS}
        checked = _check_fields(known, f"{label}: metadata {PREPROCESS_KEY!r}")
        preprocess = Preprocess(**checked, given=frozenset(checked))
    labels = None
    if LABELS_KEY in props:
        labels = _check_labels(_json(props[LABELS_KEY], LABELS_KEY, label), f"{label}: metadata {LABELS_KEY!r}")
    return ModelMetadata(preprocess, labels, props)


def read(path) -> ModelMetadata:
    """:func:`from_proto` of the model file at ``path``."""
    return from_proto(read_model_proto(path), repr(str(path)))


def read_labels_file(path) -> list[str]:
    """Class names from a text file (one per line) or a JSON list."""
    path = Path(os.fspath(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MetadataError(f"cannot read labels file {str(path)!r} ({exc}); give a UTF-8 text file with "
                            "one class name per line") from exc
    if text.lstrip().startswith("["):
        return _check_labels(_json(text, "labels", repr(str(path))), f"labels file {str(path)!r}")
    labels = [line.strip() for line in text.splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    return _check_labels(labels, f"labels file {str(path)!r}")


# --- validation -------------------------------------------------------------------------------
_FIELDS = ("size", "layout", "scale", "mean", "std", "channels")


def _json(text: str, key: str, label: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{label}: {key!r} is not valid JSON ({exc})") from exc


def _check_labels(labels, where: str) -> list[str]:
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise MetadataError(f"{where} must be a list of class names (strings)")
    if not labels:
        raise MetadataError(f"{where} is empty; give one class name per output column")
    return labels


def _check_fields(values: dict, where: str | None) -> dict:
    checks = {"size": _size, "layout": _choice(LAYOUTS), "scale": _scale, "mean": _floats(False),
              "std": _floats(True), "channels": _choice(CHANNELS)}
    out = {}
    for key, value in values.items():
        try:
            out[key] = checks[key](value)
        except (TypeError, ValueError) as exc:
            if where is None:  # command-line flags
                raise MetadataError(f"--{key} {exc}, got {value!r}") from None
            raise MetadataError(f"{where}: {key!r} {exc}, got {value!r}") from None
    return out


def _size(value) -> tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ValueError("must be [height, width], two positive integers")
    return int(value[0]), int(value[1])


def _choice(options):
    def check(value):
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value
    return check


def _number(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise ValueError("must be finite numbers")
    return float(v)


def _scale(value) -> float:
    scale = _number(value)
    if scale <= 0:
        raise ValueError("must be a positive number")
    return scale


def _floats(nonzero: bool):
    def check(value):
        values = value if isinstance(value, (list, tuple)) else [value]
        if not 1 <= len(values) <= 4:
            raise ValueError("must be one number or one per channel")
        out = tuple(_number(v) for v in values)
        if nonzero and any(v == 0 for v in out):
            raise ValueError("must not contain 0")
        return out
    return check
