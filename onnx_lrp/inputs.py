"""Turning files into model inputs: ``.npy``, ``.npz``, images and directories of these.

Arrays (``.npy``, ``.npz``) must already be what the model takes: one sample (the model's input
shape without the batch axis) or a batch (the model's rank). Images are preprocessed as the
model's ``onnx_lrp.preprocess`` metadata (or the command-line flags) say, see
:mod:`onnx_lrp.metadata`. Files are read lazily, one sample at a time (``.npy`` through a memory
map), so a directory or a large batch file is explained with bounded memory.
"""
from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidInput
from .metadata import Preprocess

ARRAY_SUFFIXES = (".npy", ".npz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SUFFIXES = ARRAY_SUFFIXES + IMAGE_SUFFIXES
_BICUBIC = getattr(Image, "Resampling", Image).BICUBIC
_BOX = getattr(Image, "Resampling", Image).BOX


class InputError(InvalidInput):
    """An input file is missing, unreadable, or does not fit the model's input."""


@dataclass(frozen=True)
class ModelInput:
    """The model's data input: its name and declared shape (``None`` for a dynamic dim)."""

    name: str
    shape: tuple[int | None, ...]
    #: an integer input (token ids, bytes): arrays keep their integers
    integer: bool = False

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def sample_shape(self) -> tuple[int | None, ...]:
        return self.shape[1:]

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape[1:])
        return f"(N, {dims})" if dims else "(N,)"

    @classmethod
    def from_dims(cls, name: str, dims, integer: bool = False) -> "ModelInput":
        return cls(name, tuple(d if isinstance(d, (int, np.integer)) and d > 0 else None for d in dims), integer)

    @classmethod
    def from_proto(cls, proto: onnx.ModelProto) -> "ModelInput | None":
        """The single floating-point graph input that is not a weight; None when that is ambiguous."""
        weights = {t.name for t in proto.graph.initializer}
        floats = [vi for vi in proto.graph.input if vi.name not in weights
                  and vi.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE,
                                                        onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)]
        if len(floats) != 1 or not floats[0].type.tensor_type.HasField("shape"):
            return None
        dims = [d.dim_value if d.HasField("dim_value") else None for d in floats[0].type.tensor_type.shape.dim]
        return cls.from_dims(floats[0].name, dims)


@dataclass
class Sample:
    """One input to explain.

    Attributes
    ----------
    name : str, a file-name-safe stem for the outputs (``cat``, ``batch_003``, ``data_x_0``)
    source : str, the file it came from
    index : int or str or None, where in the file (batch position, npz key) or None for the whole file
    x : ndarray (1, ...) float32, the model input
    image : PIL.Image or None, the original picture (RGB) when the input is an image file
    """

    name: str
    source: str
    index: int | str | None
    x: np.ndarray
    image: Image.Image | None = None

    @property
    def where(self) -> str:
        return describe(self.source, self.index)


def describe(source: str, index: int | str | None) -> str:
    """A file and a position in it, for messages: ``a.npy``, ``a.npy[3]``, ``d.npz['x'][3]``."""
    if index is None:
        return source
    if isinstance(index, int):
        return f"{source}[{index}]"
    key, _, position = index.partition("[")
    return f"{source}[{key!r}]" + (f"[{position}" if position else "")


# --- preprocessing defaults from the model -----------------------------------------------------
def resolve(pre: Preprocess, model: ModelInput | None) -> Preprocess:
    """Fill what neither metadata nor flags said (layout, size, channels) from the model's input shape."""
    if model is None:
        return pre
    layout = pre.layout or guess_layout(model)
    channels = pre.channels
    channel_dim = _channel_dim(model, layout)
    if "channels" not in pre.given and channel_dim == 1:
        channels = "gray"
    size = pre.size or _static_size(model, layout)
    return Preprocess(size=size, layout=layout, scale=pre.scale, mean=pre.mean, std=pre.std, channels=channels,
                      given=pre.given)


def guess_layout(model: ModelInput) -> str | None:
    """``flat`` for rank 2, ``nchw``/``nhwc`` for rank 4 by where a 1/3/4-sized axis sits; else None."""
    if model.rank == 2:
        return "flat"
    if model.rank == 4:
        c_first, c_last = model.shape[1], model.shape[3]
        if c_first in (1, 3, 4):
            return "nchw"
        if c_last in (1, 3, 4):
            return "nhwc"
        if c_first is None and c_last is None:
            return None
        return "nchw"
    return None


def _channel_dim(model: ModelInput, layout: str | None) -> int | None:
    if model.rank == 4 and layout in ("nchw", "nhwc"):
        return model.shape[1] if layout == "nchw" else model.shape[3]
    return None


def _static_size(model: ModelInput, layout: str | None) -> tuple[int, int] | None:
    if model.rank != 4 or layout not in ("nchw", "nhwc"):
        return None
    h, w = model.shape[2:4] if layout == "nchw" else model.shape[1:3]
    return (h, w) if h and w else None


# --- listing -----------------------------------------------------------------------------------
def list_inputs(path) -> tuple[list[Path], int]:
    """The files to explain: ``path`` itself, or the supported files of a directory (sorted, not
    recursive, hidden files skipped). Returns the files and how many others the directory held."""
    path = Path(os.fspath(path))
    if path.is_dir():
        entries = sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file())
        files = [p for p in entries if p.suffix.lower() in SUFFIXES]
        if not files:
            raise InputError(f"directory {str(path)!r} holds no {'/'.join(SUFFIXES)} files; "
                             "point INPUT at a file or a directory of inputs")
        return files, len(entries) - len(files)
    if not path.exists():
        raise InputError(f"input {str(path)!r} does not exist; pass a .npy, .npz or image file, or a directory")
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"input {str(path)!r} has an unsupported type {path.suffix or '(no suffix)'!r}; "
                         f"use one of {', '.join(SUFFIXES)}")
    return [path], 0


def load(path, model: ModelInput, pre: Preprocess, key: str | None = None) -> Iterator[Sample]:
    """Samples of one file, lazily. Raises :class:`InputError` when the file cannot be used."""
    path = Path(os.fspath(path))
    suffix = path.suffix.lower()
    if suffix == ".npy":
        yield from load_npy(path, model)
    elif suffix == ".npz":
        yield from load_npz(path, model, key)
    elif suffix in IMAGE_SUFFIXES:
        yield load_image(path, model, pre)
    else:
        raise InputError(f"input {str(path)!r} has an unsupported type {suffix!r}; use one of {', '.join(SUFFIXES)}")


# --- arrays ------------------------------------------------------------------------------------
def load_npy(path: Path, model: ModelInput) -> Iterator[Sample]:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"cannot read {str(path)!r} as a .npy array ({_reason(exc)}); "
                         "is it a complete file written by numpy.save?") from exc
    yield from _samples(array, str(path), path.stem, None, model)


def load_npz(path: Path, model: ModelInput, key: str | None = None) -> Iterator[Sample]:
    try:
        archive = np.load(path, allow_pickle=False)
        keys = list(archive.keys())
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read {str(path)!r} as a .npz archive ({_reason(exc)}); "
                         "is it a complete file written by numpy.savez?") from exc
    if key is not None and key not in keys:
        raise InputError(f"{str(path)!r} has no array {key!r}; its arrays are {keys!r} (choose one with --key)")
    if not keys:
        raise InputError(f"{str(path)!r} holds no arrays")
    with archive:
        for k in [key] if key is not None else keys:
            try:
                array = archive[k]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise InputError(f"cannot read array {k!r} of {str(path)!r} ({_reason(exc)})") from exc
            yield from _samples(array, str(path), f"{path.stem}_{_safe(k)}", k, model)


def as_batch(array: np.ndarray, where: str, model: ModelInput) -> np.ndarray:
    """``array`` as a batch for the model: one sample gets a batch axis; shapes and dtype are checked."""
    if model.integer and array.dtype.kind not in "iu":
        raise InputError(f"{where} has dtype {array.dtype}; the model input {model.name!r} takes integers "
                         "(token ids, bytes): save them with an integer dtype")
    if not model.integer and array.dtype.kind not in "f":
        raise InputError(f"{where} has dtype {array.dtype}; array inputs must already be the model's float "
                         "input (preprocessed). For a raw image pass the image file, or convert with "
                         "x.astype(np.float32) after preprocessing")
    if array.ndim == model.rank - 1 and model.rank > 1:
        array = array[None]
    if array.ndim != model.rank:
        raise InputError(f"{where} has shape {array.shape} but the model input {model.name!r} takes "
                         f"{model.describe()}: give one sample {_sample_text(model)} or a batch "
                         f"{model.describe()}{_reshape_hint(array, model)}")
    check_shape(array.shape, where, model)
    if array.shape[0] == 0:
        raise InputError(f"{where} is an empty batch {array.shape}")
    return array


def check_shape(shape, where: str, model: ModelInput, image: bool = False) -> None:
    """Raise :class:`InputError` when a batch shape does not fit the model's static dims."""
    mismatch = [i for i, d in enumerate(model.shape) if i > 0 and d is not None and shape[i] != d]
    if not mismatch:
        return
    hint = _layout_hint(tuple(shape), model, image)
    if image and not hint:
        hint = "; set --size H W, --channels (rgb, bgr, gray) or --layout to match the model"
    raise InputError(f"{where} has shape {tuple(shape)} but the model input {model.name!r} takes "
                     f"{model.describe()} (axis {mismatch[0]} is {shape[mismatch[0]]}, not "
                     f"{model.shape[mismatch[0]]}){hint}")


def _samples(array: np.ndarray, source: str, stem: str, key: str | None, model: ModelInput) -> Iterator[Sample]:
    where = source if key is None else f"{source}[{key!r}]"
    batch = as_batch(array, where, model)
    dtype = np.int64 if model.integer else np.float32
    if len(batch) == 1:
        yield Sample(stem, source, key, np.array(batch[:1], dtype=dtype))
        return
    width = len(str(len(batch) - 1))
    for i in range(len(batch)):
        index = i if key is None else f"{key}[{i}]"
        yield Sample(f"{stem}_{i:0{width}d}", source, index, np.array(batch[i:i + 1], dtype=dtype))


def _sample_text(model: ModelInput) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in model.sample_shape)
    return f"({dims},)" if model.rank == 2 else f"({dims})"


def _reshape_hint(array: np.ndarray, model: ModelInput) -> str:
    sample = model.sample_shape
    if all(d is not None for d in sample) and array.size == math.prod(sample):
        return f"; it holds the values of one sample: reshape it to (1, {', '.join(map(str, sample))})"
    return ""


def _layout_hint(shape: tuple, model: ModelInput, image: bool = False) -> str:
    """Say so when the array looks channels-last for a channels-first model, or the other way round."""
    if model.rank != 4 or any(d is None for d in model.shape[1:]):
        return ""
    want, got = tuple(model.shape[1:]), tuple(shape[1:])
    if got == (want[1], want[2], want[0]) and got != want:
        fix = "pass --layout nchw" if image else "transpose it with x.transpose(0, 3, 1, 2)"
        return f"; it is channels-last (NHWC) but the model takes channels-first (NCHW): {fix}"
    if got == (want[2], want[0], want[1]) and got != want:
        fix = "pass --layout nhwc" if image else "transpose it with x.transpose(0, 2, 3, 1)"
        return f"; it is channels-first (NCHW) but the model takes channels-last (NHWC): {fix}"
    return ""


# --- images ------------------------------------------------------------------------------------
def load_image(path: Path, model: ModelInput, pre: Preprocess) -> Sample:
    """Read an image, preprocess it as ``pre`` says and check it fits ``model``."""
    image = read_image(path)
    if pre.layout is None:
        raise InputError(f"cannot tell how to lay out image {str(path)!r} for the model input {model.name!r} "
                         f"{model.describe()}; pass --layout nchw or --layout nhwc")
    x = preprocess(image, pre)
    where = f"image {str(path)!r} (preprocessed as {pre.layout}, {pre.channels})"
    if x.ndim != model.rank:
        raise InputError(f"{where} has shape {x.shape} but the model input {model.name!r} takes "
                         f"{model.describe()}; pass --layout (nchw, nhwc or flat) and --size to match it")
    check_shape(x.shape, where, model, image=True)
    return Sample(path.stem, str(path), None, x, image.convert("RGB"))


def read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            image = ImageOps.exif_transpose(img)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read {str(path)!r} as an image ({_reason(exc)}); is it a complete "
                         "PNG/JPEG file?") from exc
    return image


def preprocess(image: Image.Image, pre: Preprocess) -> np.ndarray:
    """``x = ((pixels / scale) - mean) / std`` per channel of the image resized to ``pre.size``
    (see :func:`resize`), laid out as ``pre.layout`` with a batch axis of 1 (float32)."""
    image = image.convert("L" if pre.channels == "gray" else "RGB")
    if pre.size is not None and (image.height, image.width) != tuple(pre.size):
        image = resize(image, pre.size)
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pre.channels == "bgr":
        pixels = pixels[:, :, ::-1]
    mean, std = pre.per_channel(pre.mean, "mean"), pre.per_channel(pre.std, "std")
    x = (pixels / np.float32(pre.scale) - mean) / std
    if pre.layout == "nchw":
        x = x.transpose(2, 0, 1)
    elif pre.layout == "flat":
        x = x.reshape(-1)
    return np.ascontiguousarray(x[None], dtype=np.float32)


def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to ``size`` (H, W): area averaging when shrinking by whole factors (exact for pixel art
    that was upscaled), bicubic otherwise."""
    h, w = size
    whole = image.height % h == 0 and image.width % w == 0 and image.height > h and image.width > w
    return image.resize((w, h), _BOX if whole else _BICUBIC)


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text) or "_"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
