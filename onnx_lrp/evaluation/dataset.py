"""Samples (:class:`Item`) streamed from files or an array, and the ground-truth masks that go with them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InvalidInput
from ..explainer import Explainer

MASK_SUFFIXES = (".png", ".npy", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class Item:
    """One sample: a name (file stem, ``stem_i`` inside a batch file), x (1, ...), its mask or None."""

    name: str
    x: np.ndarray
    source: str = ""
    mask: np.ndarray | None = None


def iter_items(explainer: Explainer, inputs) -> tuple[Iterator[Item], int | None]:
    """Samples of ``inputs`` (paths of files/directories, or an array (N, ...)), lazily, and
    their count when it can be known without reading the data."""
    if isinstance(inputs, np.ndarray):
        arr = np.asarray(inputs)
        return (Item(f"sample_{i}", arr[i:i + 1]) for i in range(len(arr))), len(arr)
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    from .. import inputs as io
    from ..metadata import from_proto

    model_input = io.ModelInput.from_dims(explainer.input_name, explainer.input_shape)
    pre = io.resolve(from_proto(explainer.source_model, explainer.label).preprocess, model_input)
    files = [f for path in inputs for f in io.list_inputs(path)[0]]

    def generate():
        for f in files:
            for sample in io.load(f, model_input, pre):
                yield Item(sample.name, sample.x, sample.where)

    return generate(), _count(files, model_input)


def input_files(inputs) -> list[Path]:
    """The input files themselves, so that a masks directory beside them does not take them for masks."""
    if isinstance(inputs, np.ndarray):
        return []
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    out = []
    for p in map(Path, paths):
        out += [f for f in p.iterdir() if f.is_file()] if p.is_dir() else [p]
    return out


def _count(files, model_input) -> int | None:
    """Samples in ``files`` from headers only (for the progress bar); None when that needs reading."""
    total = 0
    for f in files:
        suffix = f.suffix.lower()
        try:
            if suffix == ".npy":
                shape = np.load(f, mmap_mode="r").shape
                total += shape[0] if len(shape) == model_input.rank else 1
            elif suffix == ".npz":
                return None
            else:
                total += 1
        except (OSError, ValueError):
            return None
    return total


class MaskFinder:
    """Masks for samples by name, from a directory. For a sample ``cat_efficientnet_lite0`` the
    first of ``cat_efficientnet_lite0_mask``, ``cat_efficientnet_mask``, ``cat_mask`` (shorter
    prefixes at underscores, so one ``cat_mask.png`` serves every model's preprocessed copy of
    the cat), then a file named exactly ``cat_efficientnet_lite0`` (a masks directory mirroring
    the inputs), each with a suffix of :data:`MASK_SUFFIXES`. Files in ``exclude`` (the inputs
    themselves, when masks sit beside them) are never masks. Images are binarised at half
    intensity (times alpha, if any) and resized (nearest) to the relevance map; ``.npy`` masks
    must already have the map's shape."""

    def __init__(self, directory, exclude=()):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise InvalidInput(f"mask directory {str(self.directory)!r} does not exist")
        skip = {Path(p).resolve() for p in exclude}
        self.files: dict[str, Path] = {}
        for p in sorted(self.directory.iterdir()):
            if p.is_file() and p.suffix.lower() in MASK_SUFFIXES and p.resolve() not in skip:
                self.files.setdefault(p.stem, p)
        self._cache: dict = {}

    def path_for(self, name: str) -> Path | None:
        parts = name.split("_")
        candidates = ["_".join(parts[:end]) + "_mask" for end in range(len(parts), 0, -1)] + [name]
        return next((self.files[c] for c in candidates if c in self.files), None)

    def __call__(self, name: str, spatial: tuple) -> np.ndarray | None:
        path = self.path_for(name)
        if path is None:
            return None
        key = (path, spatial)
        if key not in self._cache:
            self._cache[key] = load_mask(path, spatial)
        return self._cache[key]


def load_mask(path, spatial: tuple) -> np.ndarray:
    """A boolean mask of shape ``spatial`` from a PNG/JPEG (white = object) or a ``.npy``."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        mask = np.load(path, allow_pickle=False)
        if mask.shape != tuple(spatial):
            raise InvalidInput(f"mask {str(path)!r} has shape {mask.shape}; the relevance map is {tuple(spatial)}")
        return mask.astype(bool)
    from PIL import Image

    if len(spatial) != 2:
        raise InvalidInput(f"image mask {str(path)!r} needs a 2-D relevance map, got map shape {tuple(spatial)}; "
                           "give a .npy mask instead")
    try:
        with Image.open(path) as img:
            img.load()
            if "A" in img.getbands():
                gray = np.asarray(img.getchannel("A"), np.float32) * (np.asarray(img.convert("L"), np.float32) / 255)
                img = Image.fromarray(gray.astype(np.uint8))
            else:
                img = img.convert("L")
            if img.size != (spatial[1], spatial[0]):
                img = img.resize((spatial[1], spatial[0]), getattr(Image, "Resampling", Image).NEAREST)
            return np.asarray(img) >= 128
    except OSError as exc:
        raise InvalidInput(f"cannot read mask {str(path)!r} as an image ({exc})") from exc


def batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    """Lists of ``size`` items (the last may be shorter), read only as they are needed."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch



def mask_source(masks, exclude=()):
    """A function (item, map shape, sample index) -> mask or None."""
    if masks is None:
        return lambda item, spatial, index: None
    if isinstance(masks, (str, Path)):
        finder = MaskFinder(masks, exclude)
        return lambda item, spatial, index: finder(item.name, spatial)
    arr = np.asarray(masks).astype(bool)

    def from_array(item, spatial, index):
        if arr.shape == tuple(spatial):
            return arr
        if arr.shape[1:] == tuple(spatial) and index < len(arr):
            return arr[index]
        raise InvalidInput(f"masks of shape {arr.shape} match neither one relevance map {tuple(spatial)} nor a "
                           "batch of them")
    return from_array
