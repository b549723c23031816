"""Loading and preprocessing inputs (onnx_lrp.inputs) and the metadata convention (onnx_lrp.metadata)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from onnx_lrp import inputs, metadata
from onnx_lrp.errors import ModelLoadError
from onnx_lrp.inputs import InputError, ModelInput
from onnx_lrp.metadata import MetadataError, Preprocess

MODELS = Path(__file__).resolve().parent.parent / "models"
SAMPLES = MODELS / "samples"

NCHW3 = ModelInput("input", (None, 3, 32, 32))
FLAT64 = ModelInput("input", (None, 64))


def _model_with(props: dict | None = None, shape=("N", 3, 8, 8)) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph)
    for key, value in (props or {}).items():
        model.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    return model


def _shipped(name: str):
    proto = metadata.read_model_proto(MODELS / f"{name}.onnx")
    meta = metadata.from_proto(proto, name)
    model = ModelInput.from_proto(proto)
    return meta, model, inputs.resolve(meta.preprocess, model)


# --- metadata ----------------------------------------------------------------------------------
def test_shipped_metadata_is_read():
    meta, model, pre = _shipped("efficientnet_lite0")
    assert model == ModelInput("input", (None, 3, 224, 224))
    assert pre.size == (224, 224) and pre.layout == "nchw" and pre.channels == "rgb" and pre.scale == 255.0
    assert pre.mean == (0.498,) * 3 and pre.std == (0.502,) * 3
    assert meta.labels[285] == "Egyptian cat" and len(meta.labels) == 1000
    assert pre.normalises


def test_input_range_maps_pixels_0_and_255_through_the_preprocessing():
    _, _, pre = _shipped("efficientnet_lite0")
    low, high = pre.input_range()
    np.testing.assert_allclose(low, [(0 - 0.498) / 0.502] * 3, rtol=1e-6)
    np.testing.assert_allclose(high, [(1 - 0.498) / 0.502] * 3, rtol=1e-6)
    _, _, cifar = _shipped("cifar10_cnn")
    assert [cifar.input_range()[0].tolist(), cifar.input_range()[1].tolist()] == [[0, 0, 0], [255, 255, 255]]


def test_input_range_with_a_negative_std_swaps_low_and_high():
    low, high = Preprocess(scale=255.0, mean=(0.5,), std=(-0.5,), channels="gray").input_range()
    assert low.tolist() == [-1.0] and high.tolist() == [1.0]


def test_model_without_metadata_gets_defaults_from_its_input_shape():
    proto = _model_with(shape=("N", 1, 28, 28))
    meta = metadata.from_proto(proto)
    assert meta.labels is None and not meta.has_preprocess and not meta.preprocess.normalises
    pre = inputs.resolve(meta.preprocess, ModelInput.from_proto(proto))
    assert (pre.layout, pre.size, pre.channels, pre.scale) == ("nchw", (28, 28), "gray", 1.0)


def test_partial_metadata_keeps_defaults_and_ignores_unknown_keys():
    meta = metadata.from_proto(_model_with({metadata.PREPROCESS_KEY: {"scale": 255, "comment": "x"}}))
    assert meta.preprocess.scale == 255.0 and meta.preprocess.mean == (0.0,) and meta.preprocess.normalises


@pytest.mark.parametrize("value,names", [
    ("{not json", ["not valid JSON"]),
    ([1, 2], ["JSON object"]),
    ({"size": [224]}, ["'size'", "[height, width]"]),
    ({"size": [0, 5]}, ["'size'"]),
    ({"layout": "chw"}, ["'layout'", "nchw"]),
    ({"channels": "rgba"}, ["'channels'", "gray"]),
    ({"scale": 0}, ["'scale'", "positive"]),
    ({"std": [0.5, 0, 0.5]}, ["'std'", "0"]),
    ({"mean": "a"}, ["'mean'", "numbers"]),
])
def test_malformed_preprocess_metadata_names_the_key(value, names):
    with pytest.raises(MetadataError) as err:
        metadata.from_proto(_model_with({metadata.PREPROCESS_KEY: value}), "'m.onnx'")
    message = str(err.value)
    assert "m.onnx" in message and all(n in message for n in names), message


@pytest.mark.parametrize("value", ["{}", '["a", 1]', "[]", "nope"])
def test_malformed_labels_metadata(value):
    with pytest.raises(MetadataError, match="onnx_lrp.labels"):
        metadata.from_proto(_model_with({metadata.LABELS_KEY: value}), "m")


def test_flags_override_metadata_field_by_field():
    _, model, _ = _shipped("efficientnet_lite0")
    base = metadata.read(MODELS / "efficientnet_lite0.onnx").preprocess
    pre = inputs.resolve(base.override(size=[64, 96], channels="bgr", mean=None), model)
    assert pre.size == (64, 96) and pre.channels == "bgr" and pre.mean == (0.498,) * 3 and pre.layout == "nchw"
    with pytest.raises(MetadataError, match="--scale"):
        base.override(scale=-1.0)


def test_mean_with_the_wrong_number_of_channels():
    pre = Preprocess(mean=(0.1, 0.2, 0.3), channels="gray")
    with pytest.raises(MetadataError, match="--mean with 1 value"):
        pre.input_range()


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        metadata.read_model_proto(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not protobuf \xff\xff")
    with pytest.raises(ModelLoadError, match="bad.onnx"):
        metadata.read_model_proto(bad)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="no graph nodes"):
        metadata.read_model_proto(empty)


def test_labels_file_text_and_json(tmp_path):
    text = tmp_path / "labels.txt"
    text.write_text("cat\n dog \n\n")
    assert metadata.read_labels_file(text) == ["cat", "dog"]
    js = tmp_path / "labels.json"
    js.write_text('["a", "b c"]')
    assert metadata.read_labels_file(js) == ["a", "b c"]
    with pytest.raises(MetadataError, match="cannot read labels file"):
        metadata.read_labels_file(tmp_path / "missing.txt")


# --- model input and layout --------------------------------------------------------------------
@pytest.mark.parametrize("shape,layout", [
    ((None, 3, 224, 224), "nchw"), ((None, 224, 224, 3), "nhwc"), ((None, 1, 28, 28), "nchw"),
    ((None, 28, 28, 1), "nhwc"), ((None, 64), "flat"), ((None, None, None, None), None), ((None, 10, 5), None),
])
def test_guess_layout(shape, layout):
    assert inputs.guess_layout(ModelInput("x", shape)) == layout


def test_model_input_from_proto_skips_weights_and_dynamic_dims():
    model = _model_with(shape=["batch", 3, 0, 8])
    assert ModelInput.from_proto(model) == ModelInput("x", (None, 3, None, 8))
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    model.graph.initializer.append(w)
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [1]))
    assert ModelInput.from_proto(model).name == "x"


def test_text_direction_has_a_dynamic_width_and_keeps_its_metadata_size():
    _, model, pre = _shipped("text_direction")
    assert model.shape == (None, 3, None, None)
    assert pre.size == (48, 192) and pre.channels == "bgr"


# --- images ------------------------------------------------------------------------------------
@pytest.mark.parametrize("png,npy,name", [
    ("cat.png", "cat_efficientnet_lite0", "efficientnet_lite0"),
    ("coffee.png", "coffee_efficientnet_lite0", "efficientnet_lite0"),
    ("cat_cifar10.png", "cat_cifar10", "cifar10_cnn"),
    ("textline.png", "textline_text_direction", "text_direction"),
    ("textline_rotated.png", "textline_rotated_text_direction", "text_direction"),
])
def test_images_preprocessed_by_metadata_equal_the_shipped_arrays(png, npy, name):
    _, model, pre = _shipped(name)
    sample = inputs.load_image(SAMPLES / png, model, pre)
    np.testing.assert_allclose(sample.x, np.load(SAMPLES / f"{npy}.npy"), rtol=0, atol=1e-6)
    assert sample.x.dtype == np.float32 and sample.name == Path(png).stem and sample.index is None
    assert sample.image.mode == "RGB"


def test_gray_flat_digit_is_area_averaged_to_8x8():
    _, model, pre = _shipped("digits_mlp")
    sample = inputs.load_image(SAMPLES / "digit.png", model, pre)
    assert sample.x.shape == (1, 64)
    np.testing.assert_allclose(sample.x, np.load(SAMPLES / "digit.npy"), atol=1 / 255)
    assert sample.image.size == (128, 128)  # the original picture, for the overlay


def _image(tmp_path, array, name="img.png"):
    path = tmp_path / name
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return path


def test_channel_order_scale_mean_std_and_layouts(tmp_path):
    pixels = np.zeros((4, 6, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 255, 51, 0  # red-ish
    path = _image(tmp_path, pixels)
    pre = Preprocess(size=(4, 6), layout="nchw", scale=255.0, mean=(0.0, 0.1, 0.0), std=(1.0, 0.5, 2.0),
                     channels="rgb")
    x = inputs.preprocess(Image.open(path), pre)
    assert x.shape == (1, 3, 4, 6)
    np.testing.assert_allclose(x[0, :, 0, 0], [1.0, (0.2 - 0.1) / 0.5, 0.0], atol=1e-6)
    bgr = inputs.preprocess(Image.open(path), Preprocess(size=(4, 6), layout="nhwc", channels="bgr"))
    assert bgr.shape == (1, 4, 6, 3) and bgr[0, 0, 0].tolist() == [0.0, 51.0, 255.0]
    gray = inputs.preprocess(Image.open(path), Preprocess(size=(2, 3), layout="flat", channels="gray"))
    assert gray.shape == (1, 6)


def test_images_are_resized_to_the_model_size(tmp_path):
    path = _image(tmp_path, np.full((50, 70, 3), 128))
    sample = inputs.load_image(path, NCHW3, Preprocess(size=(32, 32), layout="nchw"))
    assert sample.x.shape == (1, 3, 32, 32) and sample.image.size == (70, 50)
    np.testing.assert_allclose(sample.x, 128.0)


def test_image_of_the_wrong_layout_says_which_flag_fixes_it(tmp_path):
    path = _image(tmp_path, np.zeros((32, 32, 3)))
    with pytest.raises(InputError, match="--layout nchw"):
        inputs.load_image(path, NCHW3, Preprocess(size=(32, 32), layout="nhwc"))
    with pytest.raises(InputError, match="--channels"):
        inputs.load_image(path, NCHW3, Preprocess(size=(32, 32), layout="nchw", channels="gray"))


def test_image_without_a_known_layout_asks_for_one(tmp_path):
    path = _image(tmp_path, np.zeros((8, 8, 3)))
    with pytest.raises(InputError, match="--layout"):
        inputs.load_image(path, ModelInput("x", (None, None, None, None)), Preprocess())


def test_unreadable_images(tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    with pytest.raises(InputError, match="cannot read .*fake.png.* as an image"):
        inputs.load_image(fake, NCHW3, Preprocess(layout="nchw"))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes((SAMPLES / "cat.png").read_bytes()[:2000])
    with pytest.raises(InputError, match="cut.png"):
        inputs.load_image(truncated, NCHW3, Preprocess(layout="nchw"))


# --- arrays ------------------------------------------------------------------------------------
def test_npy_one_sample_gets_a_batch_axis(tmp_path):
    np.save(tmp_path / "one.npy", np.ones((3, 32, 32), np.float32))
    (sample,) = inputs.load(tmp_path / "one.npy", NCHW3, Preprocess())
    assert sample.x.shape == (1, 3, 32, 32) and sample.name == "one" and sample.index is None


def test_npy_batch_yields_one_sample_each_lazily(tmp_path):
    batch = np.arange(12 * 3 * 32 * 32, dtype=np.float64).reshape(12, 3, 32, 32)
    np.save(tmp_path / "b.npy", batch)
    samples = inputs.load(tmp_path / "b.npy", NCHW3, Preprocess())
    first = next(samples)
    assert first.name == "b_00" and first.index == 0 and first.x.dtype == np.float32
    rest = list(samples)
    assert [s.name for s in rest][-1] == "b_11" and len(rest) == 11
    np.testing.assert_array_equal(rest[-1].x, batch[11:12].astype(np.float32))


def test_flat_npy_sample_and_batch():
    digit = list(inputs.load(SAMPLES / "digit.npy", FLAT64, Preprocess()))
    assert len(digit) == 1 and digit[0].x.shape == (1, 64)


@pytest.mark.parametrize("shape,fragment", [
    ((1, 32, 32, 3), "x.transpose(0, 3, 1, 2)"),
    ((1, 3, 16, 16), "axis 2 is 16, not 32"),
    ((2, 1, 3, 32, 32), "give one sample (3, 32, 32) or a batch (N, 3, 32, 32)"),
    ((3072,), "reshape it to (1, 3, 32, 32)"),
])
def test_npy_of_the_wrong_shape(tmp_path, shape, fragment):
    np.save(tmp_path / "x.npy", np.zeros(shape, np.float32))
    with pytest.raises(InputError) as err:
        list(inputs.load(tmp_path / "x.npy", NCHW3, Preprocess()))
    assert fragment in str(err.value) and "x.npy" in str(err.value), str(err.value)


def test_npy_of_integers_or_corrupt(tmp_path):
    np.save(tmp_path / "ints.npy", np.zeros((1, 64), np.uint8))
    with pytest.raises(InputError, match="dtype uint8"):
        list(inputs.load(tmp_path / "ints.npy", FLAT64, Preprocess()))
    (tmp_path / "cut.npy").write_bytes((SAMPLES / "digit.npy").read_bytes()[:60])
    with pytest.raises(InputError, match="cannot read .*cut.npy"):
        list(inputs.load(tmp_path / "cut.npy", FLAT64, Preprocess()))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="obj.npy"):
        list(inputs.load(tmp_path / "obj.npy", FLAT64, Preprocess()))


def test_npz_every_array_or_one_key(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.zeros((2, 64), np.float32), b=np.ones(64, np.float32))
    names = [s.name for s in inputs.load(tmp_path / "d.npz", FLAT64, Preprocess())]
    assert names == ["d_a_0", "d_a_1", "d_b"]
    (only,) = inputs.load(tmp_path / "d.npz", FLAT64, Preprocess(), key="b")
    assert only.index == "b" and only.where.endswith("['b']")
    with pytest.raises(InputError, match=r"no array 'c'; its arrays are \['a', 'b'\]"):
        list(inputs.load(tmp_path / "d.npz", FLAT64, Preprocess(), key="c"))


# --- listing -----------------------------------------------------------------------------------
def test_list_inputs_of_a_directory(tmp_path):
    for name in ("b.png", "a.npy", "c.txt", ".hidden.npy", "d.JPG"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    files, skipped = inputs.list_inputs(tmp_path)
    assert [f.name for f in files] == ["a.npy", "b.png", "d.JPG"] and skipped == 1


def test_list_inputs_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        inputs.list_inputs(tmp_path / "nope.png")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(InputError, match="unsupported type '.csv'"):
        inputs.list_inputs(tmp_path / "x.csv")
    with pytest.raises(InputError, match="holds no"):
        inputs.list_inputs(tmp_path)
