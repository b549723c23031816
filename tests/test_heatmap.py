"""Tests of onnx_lrp.heatmap: colour maps, normalisation, overlays, atomic PNG writing."""

import os

import numpy as np
import pytest
from PIL import Image

from onnx_lrp import files, heatmap
from onnx_lrp.errors import OnnxLrpError, OutputError

WHITE, BLACK = (255, 255, 255), (0, 0, 0)
RED, BLUE, CYAN = (255, 0, 0), (0, 0, 255), (0, 255, 255)

# (start colour, midpoint colour, end colour) of every map
ENDPOINTS = {
    "bwr": (BLUE, WHITE, RED),
    "seismic": ((0, 0, 208), (208, 208, 208), (208, 0, 0)),
    "coldnhot": (CYAN, BLACK, WHITE),
    "gray": (BLACK, (128, 128, 128), WHITE),
    "hot": (BLACK, (255, 128, 0), WHITE),
    "wred": (WHITE, (255, 128, 128), RED),
    "wblue": (WHITE, (128, 128, 255), BLUE),
}


def test_colormap_names_lists_every_map():
    assert heatmap.colormap_names() == tuple(sorted(ENDPOINTS))


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_cmap_start_middle_end(name):
    rgb = heatmap.apply_cmap(np.array([[0.0, 0.5, 1.0]]), name)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert [tuple(int(v) for v in c) for c in rgb[0]] == list(ENDPOINTS[name])


def test_cmap_interpolates_between_nodes_and_clips():
    # gray at 0.25: 0.25 * 255 = 63.75 -> 64; coldnhot at 0.25 is its blue node
    assert tuple(heatmap.apply_cmap(np.array(0.25), "gray")) == (64, 64, 64)
    assert tuple(heatmap.apply_cmap(np.array(0.25), "coldnhot")) == BLUE
    # bwr at 0.75: halfway white -> red = (255, 127.5, 127.5) -> (255, 128, 128)
    assert tuple(heatmap.apply_cmap(np.array(0.75), "bwr")) == (255, 128, 128)
    clipped = heatmap.apply_cmap(np.array([-3.0, 7.0]), "bwr")
    assert [tuple(c) for c in clipped] == [BLUE, RED]


def test_unknown_cmap_lists_names():
    with pytest.raises(ValueError, match="unknown colour map 'jet'.*bwr.*coldnhot") as info:
        heatmap.apply_cmap(np.zeros((2, 2)), "jet")
    assert isinstance(info.value, OnnxLrpError)
    with pytest.raises(ValueError, match="wblue"):
        heatmap.heatmap_image(np.ones((2, 2)), cmap="viridis")


def test_relevance_to_map_sums_channels_per_layout():
    rel = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(heatmap.relevance_to_map(rel), rel.sum(axis=0))
    hwc = np.moveaxis(rel, 0, -1)
    np.testing.assert_array_equal(heatmap.relevance_to_map(hwc, layout="nhwc"), rel.sum(axis=0))
    np.testing.assert_array_equal(heatmap.relevance_to_map(rel[0]), rel[0])
    np.testing.assert_array_equal(heatmap.relevance_to_map(rel[None]), rel.sum(axis=0))
    assert heatmap.relevance_to_map(rel).dtype == np.float64


def test_relevance_to_map_reshapes_flat_vectors():
    flat = np.arange(64.0)
    m = heatmap.relevance_to_map(flat, shape=(8, 8))
    assert m.shape == (8, 8) and m[1, 0] == 8.0
    flat3 = np.ones(3 * 16)
    np.testing.assert_array_equal(heatmap.relevance_to_map(flat3, shape=(3, 4, 4)), np.full((4, 4), 3.0))


@pytest.mark.parametrize(
    "rel, kwargs, message",
    [
        (np.ones(64), {}, "flat vector of 64 values; pass shape"),
        (np.ones(64), {"shape": (7, 9)}, "cannot reshape relevance of 64 values"),
        (np.ones((2, 3, 4, 4)), {}, "batch of 2 samples"),
        (np.ones((2, 3, 4, 4, 1)), {}, "cannot make a 2-D map"),
        (np.ones((3, 4, 4)), {"layout": "chw"}, "unknown layout 'chw'"),
    ],
)
def test_relevance_to_map_rejects_bad_input(rel, kwargs, message):
    with pytest.raises(ValueError, match=message):
        heatmap.relevance_to_map(rel, **kwargs)


def test_normalize_symmetric():
    m = np.array([[-1.0, 0.0], [4.0, 2.0]])
    np.testing.assert_allclose(heatmap.normalize_symmetric(m), [[0.375, 0.5], [1.0, 0.75]])
    np.testing.assert_allclose(heatmap.normalize_symmetric(-m), [[0.625, 0.5], [0.0, 0.25]])


def test_normalize_symmetric_all_zero_is_midpoint_without_nan():
    out = heatmap.normalize_symmetric(np.zeros((3, 3)))
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out, np.full((3, 3), 0.5))


def test_non_finite_relevance_is_rejected():
    with pytest.raises(ValueError, match="NaN or Inf"):
        heatmap.normalize_symmetric(np.array([1.0, np.nan]))


def test_heatmap_image_known_values_bwr():
    rel = np.array([[[0.0, 2.0], [-2.0, 1.0]]])  # (C=1, H=2, W=2)
    img = heatmap.heatmap_image(rel, cmap="bwr")
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (2, 2)
    px = np.asarray(img)
    assert tuple(px[0, 0]) == WHITE  # zero relevance: the midpoint colour
    assert tuple(px[0, 1]) == RED  # +max: the end colour
    assert tuple(px[1, 0]) == BLUE  # -max: the start colour
    assert tuple(px[1, 1]) == (255, 128, 128)


def test_heatmap_image_default_coldnhot_and_all_zero():
    img = heatmap.heatmap_image(np.zeros((3, 5, 4)))
    assert img.size == (4, 5)
    assert (np.asarray(img) == 0).all()  # coldnhot: zero relevance is black


def test_heatmap_image_resizes_nearest():
    rel = np.array([[1.0, -1.0], [0.0, 0.5]])
    img = heatmap.heatmap_image(rel, cmap="bwr", size=(8, 6))
    assert img.size == (8, 6)
    px = np.asarray(img)
    assert tuple(px[0, 0]) == RED and tuple(px[0, 7]) == BLUE and tuple(px[5, 0]) == WHITE
    assert len({tuple(c) for c in px.reshape(-1, 3)}) == 4  # nearest: no blended colours
    with pytest.raises(ValueError, match="size must be positive"):
        heatmap.heatmap_image(rel, size=(0, 3))


def test_heatmap_image_flat_nhwc():
    rel = np.zeros((4, 4, 3))
    rel[1, 2, :] = 1.0
    img = heatmap.heatmap_image(rel.reshape(-1), cmap="bwr", layout="nhwc", shape=(4, 4, 3))
    px = np.asarray(img)
    assert tuple(px[1, 2]) == RED and tuple(px[0, 0]) == WHITE


def test_overlay_blends():
    image = np.full((2, 3, 3), 100, dtype=np.uint8)
    heat = np.full((2, 3, 3), 200, dtype=np.uint8)
    np.testing.assert_array_equal(heatmap.overlay(image, heat, alpha=0.0), image)
    np.testing.assert_array_equal(heatmap.overlay(image, heat, alpha=1.0), heat)
    out = heatmap.overlay(image, Image.fromarray(heat), alpha=0.25)
    assert out.dtype == np.uint8 and (out == 125).all()
    gray = np.full((2, 3), 100, dtype=np.uint8)
    np.testing.assert_array_equal(heatmap.overlay(gray, heat), np.full((2, 3, 3), 150))


def test_overlay_rejects_mismatch_and_bad_alpha():
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"size=\(3, 2\)"):
        heatmap.overlay(image, np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="alpha"):
        heatmap.overlay(image, image, alpha=1.5)
    with pytest.raises(ValueError, match="uint8"):
        heatmap.overlay(image.astype(np.float32), image)


def test_save_png_round_trip(tmp_path):
    img = heatmap.heatmap_image(np.array([[1.0, -1.0], [0.0, 0.5]]), cmap="bwr")
    path = heatmap.save_png(img, tmp_path / "heat.png")
    assert path == tmp_path / "heat.png"
    with Image.open(path) as back:
        np.testing.assert_array_equal(np.asarray(back.convert("RGB")), np.asarray(img))
    assert os.listdir(tmp_path) == ["heat.png"]
    heatmap.save_png(np.zeros((2, 2, 3), dtype=np.uint8), str(tmp_path / "arr.png"))
    assert sorted(os.listdir(tmp_path)) == ["arr.png", "heat.png"]


def test_save_png_missing_directory_names_path(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "heat.png"
    with pytest.raises(OutputError, match=r"heat\.png.*not writable") as info:
        heatmap.save_png(Image.new("RGB", (2, 2)), target)
    assert str(target) in str(info.value)
    assert not (tmp_path / "no").exists()


def test_save_png_parent_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="file"):
        heatmap.save_png(Image.new("RGB", (2, 2)), blocker / "heat.png")
    assert os.listdir(tmp_path) == ["file"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_save_png_unwritable_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            heatmap.save_png(Image.new("RGB", (2, 2)), locked / "heat.png")
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o700)


def test_save_png_permission_denied_names_path(tmp_path, monkeypatch):
    # simulates an unwritable directory even when the tests run as root
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.tempfile, "mkstemp", denied)
    target = tmp_path / "heat.png"
    with pytest.raises(OutputError, match="not writable.*Permission denied") as info:
        heatmap.save_png(Image.new("RGB", (2, 2)), target)
    assert repr(str(target)) in str(info.value)
    assert os.listdir(tmp_path) == []


def test_save_png_failure_mid_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "heat.png"
    target.write_bytes(b"old picture")

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half written")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OutputError, match="No space left"):
        heatmap.save_png(Image.new("RGB", (2, 2)), target)
    assert os.listdir(tmp_path) == ["heat.png"]  # no temporary file left behind
    assert target.read_bytes() == b"old picture"  # the old file is untouched


def test_save_png_rejects_non_image():
    with pytest.raises(ValueError, match="uint8"):
        heatmap.save_png(np.zeros((2, 2), dtype=np.float64), "unused.png")
