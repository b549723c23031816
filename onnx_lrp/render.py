"""Writing the results of one explained input: relevance, heatmap, overlay, layers and a JSON summary.

For an input named ``NAME`` the files are

``NAME.relevance.npy``  float32 relevance, shape of the model input with a batch of 1
``NAME.heatmap.png``    channels summed, normalised symmetrically around 0, at the input's resolution
``NAME.overlay.png``    image inputs only: the heatmap blended over the picture, at the picture's size
``NAME.layers.npz``     with ``--keep-layers``: tensor name -> relevance at that tensor
``NAME.json``           the summary (model, composite, prediction, target, output, relevance sum, ...)

Every file is written with :func:`onnx_lrp.files.write_atomic` (a temporary name in the output
directory, then a rename), so a failure never leaves a half-written file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from . import heatmap
from .errors import OutputError
from .files import write_atomic
from .metadata import Preprocess

OVERLAY_MAX_ALPHA = 0.9
OVERLAY_BASE_BRIGHTNESS = 0.6
_NEAREST = getattr(Image, "Resampling", Image).NEAREST


def prepare_out_dir(path) -> Path:
    """Create the output directory if needed and check that files can be written there."""
    path = Path(os.fspath(path))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {str(path)!r} ({exc.strerror or exc}); "
                          "choose another with --out") from exc
    try:
        fd, probe = tempfile.mkstemp(prefix=".onnx-lrp-probe.", dir=path)
    except OSError as exc:
        raise OutputError(f"output directory {str(path)!r} is not writable ({exc.strerror or exc}); "
                          "choose another with --out") from exc
    os.close(fd)
    os.unlink(probe)
    return path


# --- files ------------------------------------------------------------------------------------
def save_npy(path, array) -> Path:
    return write_atomic(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))


def save_npz(path, arrays: dict) -> Path:
    return write_atomic(path, lambda f: np.savez_compressed(f, **arrays))


def save_json(path, document) -> Path:
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))


# --- heatmaps ----------------------------------------------------------------------------------
def relevance_map(relevance: np.ndarray, pre: Preprocess) -> np.ndarray | None:
    """One sample's relevance (1, ...) as a 2-D map, channels summed; None when it has no 2-D layout."""
    sample = np.asarray(relevance)[0]
    if sample.ndim == 3 and pre.layout in ("nchw", "nhwc"):
        return heatmap.relevance_to_map(sample, layout=pre.layout)
    if sample.ndim == 3 and pre.layout is None:
        return heatmap.relevance_to_map(sample, layout="nchw")
    if sample.ndim == 2:
        return sample.astype(np.float64)
    if sample.ndim == 1 and pre.size is not None:
        h, w = pre.size
        if sample.size % (h * w) == 0:
            return heatmap.relevance_to_map(sample, layout="nhwc", shape=(h, w, sample.size // (h * w)))
    return None


def heatmap_rgb(rmap: np.ndarray, cmap: str) -> np.ndarray:
    """The map normalised symmetrically (0 at the middle of the colour map) and coloured, uint8 (H, W, 3)."""
    return heatmap.apply_cmap(heatmap.normalize_symmetric(rmap), cmap)


def overlay_rgb(image: Image.Image, rmap: np.ndarray, cmap: str, heat: np.ndarray | None = None) -> np.ndarray:
    """The heatmap over the picture (dimmed gray, so the colours stand out), at the picture's size.

    The heatmap's opacity is |relevance| relative to its 99th percentile (capped at
    :data:`OVERLAY_MAX_ALPHA`): salient regions are coloured, the rest shows the picture.
    ``heat``: :func:`heatmap_rgb` of the map when already made (it is not made again).
    """
    width, height = image.size
    unit = heatmap.normalize_symmetric(rmap)
    strength = np.abs(unit - 0.5) * 2.0
    top = float(np.percentile(strength, 99))
    alpha = np.clip(strength / top, 0.0, 1.0) * OVERLAY_MAX_ALPHA if top > 0 else np.zeros_like(strength)
    heat = _resized(heatmap.apply_cmap(unit, cmap) if heat is None else heat, width, height).astype(np.float64)
    alpha = _resized((alpha * 255).astype(np.uint8), width, height)[..., None] / 255.0
    gray = np.asarray(image.convert("L"), np.float64)[..., None] * OVERLAY_BASE_BRIGHTNESS
    return np.rint((1.0 - alpha) * gray + alpha * heat).astype(np.uint8)


def _resized(array: np.ndarray, width: int, height: int) -> np.ndarray:
    if array.shape[:2] == (height, width):
        return array
    return np.asarray(Image.fromarray(array).resize((width, height), _NEAREST))


# --- one input ---------------------------------------------------------------------------------
def write_result(out: Path, name: str, relevance: np.ndarray, pre: Preprocess, cmap: str, image=None,
                 layers: dict | None = None) -> dict[str, str]:
    """Write relevance, heatmap, overlay (with ``image``) and layers (when given) of one input.

    Returns the written files by kind (``relevance``, ``heatmap``, ``overlay``, ``layers``).
    """
    files = {"relevance": save_npy(out / f"{name}.relevance.npy", relevance.astype(np.float32))}
    rmap = relevance_map(relevance, pre)
    if rmap is not None:
        heat = heatmap_rgb(rmap, cmap)
        files["heatmap"] = heatmap.save_png(heat, out / f"{name}.heatmap.png")
        if image is not None:
            files["overlay"] = heatmap.save_png(overlay_rgb(image, rmap, cmap, heat), out / f"{name}.overlay.png")
    if layers is not None:
        files["layers"] = save_npz(out / f"{name}.layers.npz", layers)
    return {kind: str(path) for kind, path in files.items()}


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... when an earlier input of this run already used it."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate
