"""Pictures for HTML reports: thumbnails encoded as data URIs, heatmaps at thumbnail size, and the
picture behind a preprocessed input.

Reports show small images (at most :data:`THUMB` pixels a side; the browser scales small maps
up with ``image-rendering: pixelated``), so a report of many inputs stays small. Photographs and
overlays are JPEG; relevance maps are indexed PNG: the map quantised to 256 steps along the colour
map (exact to 1/255 of its range), a third of the bytes of an RGB PNG.
"""
from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from .. import heatmap
from ..render import overlay_rgb

THUMB = 128
JPEG_QUALITY = 80
SMALL = 64  # pictures up to this size a side are PNG
_BOX = getattr(Image, "Resampling", Image).BOX


def data_uri(image, fmt: str = "PNG") -> str:
    """``data:image/...;base64,...`` of a PIL image or a uint8 (H, W[, 3]) array."""
    image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG")
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def thumb_size(height: int, width: int, limit: int = THUMB) -> tuple[int, int]:
    """(height, width) scaled down to fit ``limit`` a side, never up."""
    factor = min(1.0, limit / max(height, width))
    return max(1, round(height * factor)), max(1, round(width * factor))


def shrink_map(rmap: np.ndarray, limit: int = THUMB) -> np.ndarray:
    """A relevance map averaged over boxes (area resampling) to fit ``limit`` a side."""
    rmap = np.asarray(rmap, np.float64)
    h, w = thumb_size(*rmap.shape, limit)
    if (h, w) == rmap.shape:
        return rmap
    resized = Image.fromarray(rmap.astype(np.float32)).resize((w, h), _BOX)
    return np.asarray(resized, np.float64)


def shrink_picture(picture: Image.Image, limit: int = THUMB) -> Image.Image:
    h, w = thumb_size(picture.height, picture.width, limit)
    return picture.convert("RGB") if (w, h) == picture.size else picture.convert("RGB").resize((w, h), _BOX)


def heatmap_uri(rmap: np.ndarray, cmap: str = "coldnhot", limit: int = THUMB) -> str:
    """The map normalised symmetrically (zero relevance at the colour map's middle), coloured, as PNG."""
    unit = heatmap.normalize_symmetric(shrink_map(rmap, limit))
    indexed = Image.fromarray(np.rint(unit * 255).astype(np.uint8))
    indexed = indexed.convert("P")  # an identity palette first, replaced by the colour map's 256 colours
    indexed.putpalette(heatmap.apply_cmap(np.linspace(0.0, 1.0, 256), cmap).reshape(-1).tolist())
    return data_uri(indexed)


def picture_uri(picture: Image.Image, limit: int = THUMB) -> str:
    small = shrink_picture(picture, limit)
    return data_uri(small, _photo_format(small))


def _photo_format(image: Image.Image) -> str:
    """JPEG for photographs; PNG for tiny pictures (smaller than JPEG's headers, and exact)."""
    return "PNG" if max(image.size) <= SMALL else "JPEG"


def overlay_uri(picture: Image.Image, rmap: np.ndarray, cmap: str = "coldnhot", limit: int = THUMB) -> str:
    """The heatmap over the picture (as ``NAME.overlay.png`` is made), at thumbnail size."""
    small = shrink_picture(picture, limit)
    return data_uri(overlay_rgb(small, shrink_map(rmap, max(small.size)), cmap), _photo_format(small))


def mask_uri(mask: np.ndarray, limit: int = THUMB) -> str:
    """A boolean mask as a black (background) and white (object) PNG."""
    image = Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255)
    h, w = thumb_size(image.height, image.width, limit)
    return data_uri(image if (w, h) == image.size else image.resize((w, h), _BOX))


def picture_from_input(x: np.ndarray, pre) -> Image.Image | None:
    """The picture a preprocessed image input ``x`` (one sample, batch axis optional) came from:
    ``pixels = (x * std + mean) * scale`` per channel, laid out as ``pre.layout`` says.

    None when the model's metadata or flags stated no pixel scaling (scale, mean, std), when the
    layout is unknown, or when ``x`` does not fit it: then ``x`` is not known to be a picture.
    """
    if pre is None or not pre.normalises or pre.layout not in ("nchw", "nhwc", "flat"):
        return None
    x = np.asarray(x, np.float32)
    x = x[0] if x.ndim in (2, 4) and x.shape[0] == 1 else x
    channels = pre.num_channels
    hwc = _as_hwc(x, pre.layout, channels, pre.size)
    if hwc is None:
        return None
    try:
        mean, std = pre.per_channel(pre.mean, "mean"), pre.per_channel(pre.std, "std")
    except Exception:
        return None
    pixels = np.clip(np.rint((hwc * std + mean) * pre.scale), 0, 255).astype(np.uint8)
    if channels == 1:
        return Image.fromarray(np.ascontiguousarray(pixels[..., 0]))
    if pre.channels == "bgr":
        pixels = pixels[..., ::-1]
    return Image.fromarray(np.ascontiguousarray(pixels))


def _as_hwc(x: np.ndarray, layout: str, channels: int, size) -> np.ndarray | None:
    if layout == "flat":
        if x.ndim != 1 or size is None or x.size != size[0] * size[1] * channels:
            return None
        return x.reshape(size[0], size[1], channels)
    if x.ndim != 3:
        return None
    hwc = np.moveaxis(x, 0, -1) if layout == "nchw" else x
    return hwc if hwc.shape[-1] == channels else None
