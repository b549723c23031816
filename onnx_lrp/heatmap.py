"""Heatmaps of relevance: colour maps, normalisation, overlays and PNG writing.

numpy and Pillow only (no matplotlib). The colour maps reuse the node colours of Zennit's built-in
maps (``zennit.image.CMAPS``); the centre node of the diverging maps sits exactly at 0.5, so zero
relevance gets the centre colour (white for ``bwr``, black for ``coldnhot``).

Typical use::

    img = heatmap_image(result.relevance[0], cmap="coldnhot")
    save_png(img, "heatmap.png")
"""

from __future__ import annotations


import numpy as np
from PIL import Image

from onnx_lrp.errors import InvalidInput
from onnx_lrp.files import write_atomic

LAYOUTS = ("nchw", "nhwc")
#: zlib level of written PNGs: the same pixels as Pillow's default (6) for a quarter of the CPU
#: (224² heatmap 2.7 ms instead of 11.8 ms, overlay 3.7 instead of 12.8) and 4-26 % more bytes
#: (level 0: 1 ms, but 3.5× the bytes); ``tools/bench_dataset.py --png-levels`` measures it.
PNG_COMPRESS_LEVEL = 1

# name -> ((position in [0, 1], "rrggbb"), ...), colours as in zennit.image.CMAPS
_CMAPS = {
    "bwr": ((0.0, "0000ff"), (0.5, "ffffff"), (1.0, "ff0000")),
    "seismic": ((0.0, "0000d0"), (0.5, "d0d0d0"), (1.0, "d00000")),
    "coldnhot": (
        (0.0, "00ffff"), (0.25, "0000ff"), (0.5, "000000"),
        (2 / 3, "ff0000"), (5 / 6, "ffff00"), (1.0, "ffffff"),
    ),
    "gray": ((0.0, "000000"), (1.0, "ffffff")),
    "hot": ((0.0, "000000"), (1 / 3, "ff0000"), (2 / 3, "ffff00"), (1.0, "ffffff")),
    "wred": ((0.0, "ffffff"), (1.0, "ff0000")),
    "wblue": ((0.0, "ffffff"), (1.0, "0000ff")),
}


class HeatmapError(InvalidInput, ValueError):
    """A relevance array, colour map name or image that cannot be turned into a heatmap."""


def colormap_names():
    """Names of the built-in colour maps.

    Returns
    -------
    tuple of str
        Sorted colour map names accepted by :func:`apply_cmap` and :func:`heatmap_image`.
    """
    return tuple(sorted(_CMAPS))


def _cmap_nodes(name):
    """Node positions (K,) and RGB colours (K, 3) of a colour map."""
    if name not in _CMAPS:
        raise HeatmapError(f"unknown colour map {name!r}; choose one of {', '.join(colormap_names())}")
    positions = np.array([p for p, _ in _CMAPS[name]])
    colours = np.array([[int(c[i:i + 2], 16) for i in (0, 2, 4)] for _, c in _CMAPS[name]], dtype=np.float64)
    return positions, colours


def _check_finite(array, what):
    if not np.all(np.isfinite(array)):
        raise HeatmapError(f"{what} holds NaN or Inf; check the model output and the explained input")


def apply_cmap(unit_map, name="coldnhot"):
    """Colour a map of values in [0, 1].

    Parameters
    ----------
    unit_map : array_like
        Values in [0, 1] (others are clipped), any shape, typically (H, W).
    name : str
        Colour map name, see :func:`colormap_names`.

    Returns
    -------
    numpy.ndarray
        uint8 array of shape ``unit_map.shape + (3,)``; colours are interpolated linearly
        between the map's nodes.
    """
    positions, colours = _cmap_nodes(name)
    values = np.asarray(unit_map, dtype=np.float64)
    _check_finite(values, "the map to colour")
    values = np.clip(values, 0.0, 1.0)
    rgb = np.stack([np.interp(values, positions, colours[:, k]) for k in range(3)], axis=-1)
    return np.rint(rgb).astype(np.uint8)


def relevance_to_map(relevance, layout="nchw", shape=None):
    """Sum the channels of one sample's relevance into a 2-D map.

    Parameters
    ----------
    relevance : array_like
        (C, H, W) for ``layout="nchw"``, (H, W, C) for ``layout="nhwc"``, (H, W), a batch of
        one (1, ...) of those, or a flat vector together with ``shape``.
    layout : {"nchw", "nhwc"}
        Where the channel axis is.
    shape : tuple of int, optional
        Shape to reshape ``relevance`` to first, e.g. ``(8, 8)`` for a 64-vector or
        ``(3, 8, 8)`` for a flat 192-vector.

    Returns
    -------
    numpy.ndarray
        float64 array (H, W).
    """
    if layout not in LAYOUTS:
        raise HeatmapError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    array = _reshaped(np.asarray(relevance, dtype=np.float64), shape)
    if array.ndim == 4:
        array = _single_sample(array)
    if array.ndim == 3:
        array = array.sum(axis=0 if layout == "nchw" else -1)
    if array.ndim != 2:
        raise HeatmapError(
            f"cannot make a 2-D map from relevance of shape {array.shape}; "
            "pass (C, H, W), (H, W, C) with layout='nhwc', (H, W), or a flat vector with shape=(H, W)"
        )
    return array


def _reshaped(array, shape):
    """Apply the optional ``shape`` and insist on it for flat vectors."""
    if shape is None:
        if array.ndim == 1:
            raise HeatmapError(
                f"relevance is a flat vector of {array.size} values; pass shape=(H, W) or (C, H, W)"
            )
        return array
    shape = tuple(int(n) for n in shape)
    if int(np.prod(shape)) != array.size:
        raise HeatmapError(f"cannot reshape relevance of {array.size} values to shape {shape!r}")
    return array.reshape(shape)


def _single_sample(array):
    if array.shape[0] != 1:
        raise HeatmapError(
            f"relevance has a batch of {array.shape[0]} samples {array.shape}; "
            "make one heatmap per sample, e.g. relevance[i]"
        )
    return array[0]


def normalize_symmetric(m):
    """Map relevance to [0, 1] around 0.5 using the largest absolute value.

    Parameters
    ----------
    m : array_like
        Relevance map.

    Returns
    -------
    numpy.ndarray
        ``0.5 + 0.5 * m / max|m|``: 0.5 is zero relevance, 1 is ``+max|m|``, 0 is ``-max|m|``.
        An all-zero map gives all 0.5.
    """
    m = np.asarray(m, dtype=np.float64)
    _check_finite(m, "relevance")
    scale = np.max(np.abs(m)) if m.size else 0.0
    if scale == 0.0:
        return np.full(m.shape, 0.5)
    return 0.5 + 0.5 * m / scale


def heatmap_image(relevance, cmap="coldnhot", size=None, layout="nchw", shape=None):
    """Render one sample's relevance as an RGB heatmap.

    Channels are summed (:func:`relevance_to_map`), the map is normalised symmetrically
    (:func:`normalize_symmetric`) and coloured (:func:`apply_cmap`).

    Parameters
    ----------
    relevance : array_like
        See :func:`relevance_to_map`.
    cmap : str
        Colour map name, see :func:`colormap_names`.
    size : (int, int), optional
        Output (width, height); the map is resized with nearest-neighbour sampling.
    layout, shape
        Passed to :func:`relevance_to_map`.

    Returns
    -------
    PIL.Image.Image
        RGB image.
    """
    unit = normalize_symmetric(relevance_to_map(relevance, layout=layout, shape=shape))
    image = Image.fromarray(apply_cmap(unit, cmap))
    if size is None:
        return image
    return image.resize(_checked_size(size), getattr(Image, "Resampling", Image).NEAREST)


def _checked_size(size):
    try:
        width, height = (int(n) for n in size)
    except (TypeError, ValueError):
        raise HeatmapError(f"size must be (width, height), got {size!r}") from None
    if width < 1 or height < 1:
        raise HeatmapError(f"size must be positive (width, height), got {size!r}")
    return width, height


def _as_rgb(image, what):
    """uint8 (H, W, 3) array from a PIL image or an array (gray or RGBA accepted)."""
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise HeatmapError(f"{what} must be uint8, got {array.dtype}; scale to 0..255 and cast first")
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise HeatmapError(f"{what} must be (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}")
    return array[:, :, :3]


def overlay(image_rgb_uint8, heat_rgb, alpha=0.5):
    """Blend a heatmap over an image.

    Parameters
    ----------
    image_rgb_uint8 : PIL.Image.Image or numpy.ndarray
        The input image, uint8 (H, W, 3) (gray and RGBA are accepted).
    heat_rgb : PIL.Image.Image or numpy.ndarray
        The heatmap of the same height and width (use ``heatmap_image(..., size=(W, H))``).
    alpha : float
        Weight of the heatmap, in [0, 1].

    Returns
    -------
    numpy.ndarray
        uint8 (H, W, 3): ``(1 - alpha) * image + alpha * heat``.
    """
    base, heat = _as_rgb(image_rgb_uint8, "image"), _as_rgb(heat_rgb, "heatmap")
    if base.shape != heat.shape:
        raise HeatmapError(
            f"image {base.shape[:2]} and heatmap {heat.shape[:2]} differ in (H, W); "
            f"render the heatmap with size=({base.shape[1]}, {base.shape[0]})"
        )
    if not 0.0 <= alpha <= 1.0:
        raise HeatmapError(f"alpha must lie in [0, 1], got {alpha!r}")
    blended = (1.0 - alpha) * base.astype(np.float64) + alpha * heat.astype(np.float64)
    return np.rint(blended).astype(np.uint8)


def save_png(img, path):
    """Write an image as PNG atomically.

    The PNG is written to a temporary file in the target directory and renamed over ``path``,
    so a failure never leaves a half-written file (an existing file stays as it was).

    Parameters
    ----------
    img : PIL.Image.Image or numpy.ndarray
        Image, or uint8 array (H, W) / (H, W, 3) / (H, W, 4).
    path : str or os.PathLike
        Destination file.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    onnx_lrp.errors.OutputError
        If the directory is missing or not writable, or the file cannot be written.
    """
    image = img if isinstance(img, Image.Image) else Image.fromarray(_as_uint8_array(img))
    return write_atomic(path, lambda handle: image.save(handle, format="PNG", compress_level=PNG_COMPRESS_LEVEL),
                        "PNG ")


def _as_uint8_array(img):
    array = np.asarray(img)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise HeatmapError(
            f"save_png needs a PIL image or a uint8 (H, W[, 3|4]) array, got {array.dtype} {array.shape}"
        )
    return array
