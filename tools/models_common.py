"""Shared helpers for ``tools/build_models.py``: paths, metadata, sample images, checks.

Every shipped model carries two ``metadata_props`` entries (see ``models/README.md``):

``onnx_lrp.preprocess``
    JSON object ``{"size": [H, W], "layout": "nchw" | "nhwc" | "flat", "scale": s,
    "mean": [...], "std": [...], "channels": "rgb" | "bgr" | "gray"}`` meaning
    ``x = ((pixels / scale) - mean) / std`` on raw 0-255 pixel values.
``onnx_lrp.labels``
    JSON list of class names, index = output column.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SAMPLES = MODELS / "samples"
LABELS = MODELS / "labels"

PREPROCESS_KEY = "onnx_lrp.preprocess"
LABELS_KEY = "onnx_lrp.labels"


def package_version(name: str) -> str:
    """Installed version of a distribution, for provenance in metadata and the README."""
    return importlib.metadata.version(name)


def preprocess_spec(size, layout, scale, mean, std, channels) -> dict:
    """The ``onnx_lrp.preprocess`` object, checked for the documented keys and values."""
    if layout not in ("nchw", "nhwc", "flat"):
        raise ValueError(f"layout {layout!r} is not one of 'nchw', 'nhwc', 'flat'")
    if channels not in ("rgb", "bgr", "gray"):
        raise ValueError(f"channels {channels!r} is not one of 'rgb', 'bgr', 'gray'")
    if len(mean) != len(std):
        raise ValueError(f"mean {mean!r} and std {std!r} differ in length")
    return {"size": [int(size[0]), int(size[1])], "layout": layout, "scale": float(scale),
            "mean": [float(m) for m in mean], "std": [float(s) for s in std], "channels": channels}


def set_metadata(model: onnx.ModelProto, preprocess: dict, labels: list[str],
                 extra: dict[str, str] | None = None) -> None:
    """Replace the model's onnx_lrp.* metadata_props; the graph itself is not touched."""
    entries = {PREPROCESS_KEY: json.dumps(preprocess), LABELS_KEY: json.dumps(labels)}
    entries.update(extra or {})
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)


def apply_preprocess(pixels: np.ndarray, spec: dict) -> np.ndarray:
    """Raw RGB HxWx3 (or grey HxW) uint8 pixels -> float32 batch of one, as the spec says."""
    pixels = np.asarray(pixels)
    if spec["channels"] == "bgr":
        pixels = pixels[..., ::-1]
    elif spec["channels"] == "gray" and pixels.ndim == 3:
        pixels = np.asarray(Image.fromarray(pixels).convert("L"))
    x = pixels.astype(np.float32) / np.float32(spec["scale"])
    mean = np.asarray(spec["mean"], dtype=np.float32)
    std = np.asarray(spec["std"], dtype=np.float32)
    if spec["layout"] == "flat":
        return ((x.reshape(1, -1) - mean) / std).astype(np.float32)
    if x.ndim == 2:
        x = x[..., None]
    x = (x - mean) / std  # broadcasts over the trailing channel axis
    if spec["layout"] == "nchw":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None], dtype=np.float32)


def write_labels(name: str, labels: list[str]) -> None:
    LABELS.mkdir(parents=True, exist_ok=True)
    (LABELS / f"{name}.txt").write_text("".join(f"{label}\n" for label in labels))


def read_labels(name: str) -> list[str]:
    return (LABELS / f"{name}.txt").read_text().splitlines()


def center_square(img: Image.Image) -> Image.Image:
    """Largest centred square crop."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def skimage_photo(name: str, size: int) -> Image.Image:
    """A scikit-image bundled photo (no download), centre-cropped and resized to size x size."""
    import skimage.data

    img = Image.fromarray(getattr(skimage.data, name)())
    return center_square(img).resize((size, size), Image.BICUBIC)


def save_sample(stem: str, array: np.ndarray) -> Path:
    SAMPLES.mkdir(parents=True, exist_ok=True)
    path = SAMPLES / f"{stem}.npy"
    np.save(path, np.ascontiguousarray(array, dtype=np.float32))
    return path


def save_model(model: onnx.ModelProto, name: str) -> Path:
    onnx.checker.check_model(model, full_check=True)
    MODELS.mkdir(parents=True, exist_ok=True)
    path = MODELS / f"{name}.onnx"
    onnx.save_model(model, path)
    return path


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = session(path)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def op_summary(model: onnx.ModelProto) -> str:
    """'opset N; Op1, Op2, ...' for the report and README."""
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    ops = sorted({(n.domain or "", n.op_type) for n in model.graph.node})
    names = ", ".join(f"{d}:{t}" if d else t for d, t in ops)
    return f"opset {opsets}; ops: {names}"
