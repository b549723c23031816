"""PaddleOCR's text-direction classifier as shipped in the ``rapidocr-onnxruntime`` wheel.

``ch_ppocr_mobile_v2.0_cls_infer.onnx`` is a PaddlePaddle export (paddle2onnx, opset 11) of a
MobileNetV3-small classifier: class 0 '0' (upright), class 1 '180' (upside down), with a final
Softmax, so its output is probabilities. Its graph is kept byte for byte; only
``metadata_props`` are added. RapidOCR's ``TextClassifier`` feeds it BGR images (its
``LoadImage`` converts everything to OpenCV's BGR), resized to height 48 keeping the aspect
ratio (width at most 192), as (x / 255 - 0.5) / 0.5 in CHW, zero-padded (in normalized units)
on the right to width 192. The samples here are rendered at exactly 48x192, so no padding.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import onnx
from PIL import Image, ImageDraw, ImageFont

LABELS = ["0", "180"]
INPUT_HW = (48, 192)
SAMPLE_TEXT = "Relevance 2024"


def shipped_path() -> Path:
    # located through the distribution, not imported: the package's __init__ needs OpenCV
    dist = importlib.metadata.distribution("rapidocr-onnxruntime")
    return Path(dist.locate_file("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"))


def load_shipped() -> onnx.ModelProto:
    return onnx.load_model(shipped_path())


def graph_bytes(model: onnx.ModelProto) -> bytes:
    """The serialized graph: equal bytes mean the shipped network is untouched."""
    return model.graph.SerializeToString(deterministic=True)


def render_textline(text: str = SAMPLE_TEXT) -> Image.Image:
    """Dark text on a light background at the classifier's 48x192 (4:1), Pillow's own font.

    Pillow's bundled default font is used so the sample does not depend on system fonts.
    """
    font = ImageFont.load_default(size=40)
    left, top, right, bottom = font.getbbox(text)
    margin = 6
    width, height = right - left + 2 * margin, bottom - top + 2 * margin
    # widen or heighten the canvas to exactly 4:1 so that resizing does not distort the glyphs
    canvas_w = max(width, 4 * height)
    canvas_h = canvas_w // 4
    img = Image.new("RGB", (canvas_w, canvas_h), (245, 245, 240))
    draw = ImageDraw.Draw(img)
    x = (canvas_w - (right - left)) // 2 - left
    y = (canvas_h - (bottom - top)) // 2 - top
    draw.text((x, y), text, fill=(20, 20, 25), font=font)
    return img.resize((INPUT_HW[1], INPUT_HW[0]), Image.LANCZOS)
