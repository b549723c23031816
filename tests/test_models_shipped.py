"""The trained models in models/: they load, their samples classify as models/README.md says,
and their onnx_lrp.* metadata follows the documented convention.

Needs only numpy, onnx, onnxruntime and Pillow (no torch, no scikit-learn). The models and
samples are built by tools/build_models.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

MODELS = Path(__file__).resolve().parent.parent / "models"
SAMPLES = MODELS / "samples"
MANIFEST = json.loads((MODELS / "MANIFEST.json").read_text())

# model file stem -> labels file stem
SHIPPED = {
    "efficientnet_lite0": "imagenet",
    "cifar10_cnn": "cifar10",
    "text_direction": "text_direction",
    "digits_mlp": "digits",
}
PREPROCESS_KEYS = {"size", "layout", "scale", "mean", "std", "channels"}


def _model(name: str) -> onnx.ModelProto:
    return onnx.load_model(MODELS / f"{name}.onnx")


def _metadata(name: str) -> dict[str, str]:
    return {p.key: p.value for p in _model(name).metadata_props}


def _run(name: str, x: np.ndarray, output: str | None = None) -> np.ndarray:
    sess = ort.InferenceSession(str(MODELS / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    outputs = None if output is None else [output]
    return sess.run(outputs, {sess.get_inputs()[0].name: x})[0]


def _sample(stem: str) -> np.ndarray:
    x = np.load(SAMPLES / f"{stem}.npy")
    assert x.dtype == np.float32
    return x


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _preprocess(pixels: np.ndarray, spec: dict) -> np.ndarray:
    """The documented convention, written out independently of tools/models_common.py."""
    if spec["channels"] == "bgr":
        pixels = pixels[..., ::-1]
    x = pixels.astype(np.float32) / np.float32(spec["scale"])
    if x.ndim == 2:
        x = x[..., None]
    x = (x - np.float32(spec["mean"])) / np.float32(spec["std"])
    if spec["layout"] == "flat":
        return x.reshape(1, -1)
    if spec["layout"] == "nchw":
        x = x.transpose(2, 0, 1)
    return x[None]


@pytest.mark.parametrize("name", SHIPPED)
def test_model_is_valid_onnx(name):
    onnx.checker.check_model(_model(name), full_check=True)


@pytest.mark.parametrize("name", SHIPPED)
def test_manifest_hash_matches_file(name):
    digest = hashlib.sha256((MODELS / f"{name}.onnx").read_bytes()).hexdigest()
    assert MANIFEST[name]["sha256"] == digest, "rebuild with tools/build_models.py"


@pytest.mark.parametrize("name", SHIPPED)
def test_preprocess_metadata_follows_convention(name):
    spec = json.loads(_metadata(name)["onnx_lrp.preprocess"])
    assert set(spec) == PREPROCESS_KEYS
    assert spec["layout"] in ("nchw", "nhwc", "flat")
    assert spec["channels"] in ("rgb", "bgr", "gray")
    assert len(spec["size"]) == 2 and all(isinstance(v, int) and v > 0 for v in spec["size"])
    assert spec["scale"] > 0
    assert len(spec["mean"]) == len(spec["std"]) == (1 if spec["channels"] == "gray" else 3)
    assert all(s != 0 for s in spec["std"])

    dims = _model(name).graph.input[0].type.tensor_type.shape.dim
    h, w = spec["size"]
    channels = len(spec["mean"])
    expected = {"nchw": [channels, h, w], "nhwc": [h, w, channels], "flat": [h * w * channels]}
    # a symbolic dim (text_direction's H and W are '?') accepts any size
    actual = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
    assert len(actual) == len(expected[spec["layout"]])
    assert all(a in (None, e) for a, e in zip(actual, expected[spec["layout"]]))


@pytest.mark.parametrize("name,labels_file", SHIPPED.items())
def test_labels_metadata_matches_labels_file_and_output(name, labels_file):
    labels = json.loads(_metadata(name)["onnx_lrp.labels"])
    assert isinstance(labels, list) and all(isinstance(label, str) for label in labels)
    assert labels == (MODELS / "labels" / f"{labels_file}.txt").read_text().splitlines()
    assert len(set(labels)) == len(labels)
    outputs = {o.name: o for o in _model(name).graph.output}
    scores = outputs.get("probabilities") or next(iter(outputs.values()))
    assert scores.type.tensor_type.shape.dim[-1].dim_value == len(labels)


@pytest.mark.parametrize("png,npy,name", [
    ("cat.png", "cat_efficientnet_lite0", "efficientnet_lite0"),
    ("coffee.png", "coffee_efficientnet_lite0", "efficientnet_lite0"),
    ("cat_cifar10.png", "cat_cifar10", "cifar10_cnn"),
    ("textline.png", "textline_text_direction", "text_direction"),
    ("textline_rotated.png", "textline_rotated_text_direction", "text_direction"),
])
def test_sample_is_png_preprocessed_by_metadata(png, npy, name):
    spec = json.loads(_metadata(name)["onnx_lrp.preprocess"])
    pixels = np.asarray(Image.open(SAMPLES / png).convert("RGB"))
    assert list(pixels.shape[:2]) == spec["size"]
    np.testing.assert_allclose(_preprocess(pixels, spec), _sample(npy), rtol=0, atol=1e-6)


def test_efficientnet_lite0_cat_is_a_cat():
    logits = _run("efficientnet_lite0", _sample("cat_efficientnet_lite0"))
    assert logits.shape == (1, 1000)
    assert 281 <= int(np.argmax(logits)) <= 285  # tabby .. Egyptian cat
    assert _softmax(logits)[0, 281:286].sum() > 0.5


def test_efficientnet_lite0_coffee_is_espresso_or_cup():
    logits = _run("efficientnet_lite0", _sample("coffee_efficientnet_lite0"))
    assert int(np.argmax(logits)) in (967, 968)


def test_efficientnet_lite0_dynamic_batch():
    batch = np.concatenate([_sample("cat_efficientnet_lite0"), _sample("coffee_efficientnet_lite0")])
    logits = _run("efficientnet_lite0", batch)
    assert logits.shape == (2, 1000)
    np.testing.assert_allclose(logits[1:], _run("efficientnet_lite0", batch[1:]), atol=1e-4)


def test_cifar10_cnn_cat_is_a_cat():
    logits = _run("cifar10_cnn", _sample("cat_cifar10"))
    assert logits.shape == (1, 10)
    assert int(np.argmax(logits)) == 3


def test_text_direction_upright_and_rotated():
    upright = _run("text_direction", _sample("textline_text_direction"))
    rotated = _run("text_direction", _sample("textline_rotated_text_direction"))
    # the graph ends in Softmax: rows are probabilities over ['0', '180']
    assert int(np.argmax(upright)) == 0 and upright[0, 0] > 0.9
    assert int(np.argmax(rotated)) == 1 and rotated[0, 1] > 0.9


def test_text_direction_graph_is_as_shipped():
    model = _model("text_direction")
    graph = model.graph.SerializeToString(deterministic=True)
    assert hashlib.sha256(graph).hexdigest() == MANIFEST["text_direction"]["graph_sha256"]
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 11)]


def test_digits_mlp_test_accuracy():
    data = np.load(SAMPLES / "digits_test.npz")
    x = (data["x"].astype(np.float32) / np.float32(16.0)).reshape(-1, 64)
    probs = _run("digits_mlp", x, "probabilities")
    accuracy = float(np.mean(np.argmax(probs, axis=1) == data["y"]))
    assert len(x) == MANIFEST["digits_mlp"]["checks"]["test_size"]
    assert accuracy >= 0.95
    assert accuracy == pytest.approx(MANIFEST["digits_mlp"]["checks"]["test_accuracy"], abs=1e-4)


def test_digits_mlp_sample_and_label_output():
    digit = _sample("digit")
    assert digit.shape == (1, 64)
    expected = MANIFEST["digits_mlp"]["checks"]["digit"]["true"]
    assert int(np.argmax(_run("digits_mlp", digit, "probabilities"))) == expected
    assert int(_run("digits_mlp", digit, "label")[0]) == expected
