#!/usr/bin/env python
"""Copy PaddleOCR's PP-OCRv4 text-line recogniser from rapidocr-onnxruntime into tests/fixtures/thirdparty/.

``rapidocr-onnxruntime`` (RapidAI, Apache-2.0) ships ``models/ch_PP-OCRv4_rec_infer.onnx``: PaddleOCR's
PP-OCRv4 mobile recogniser (Chinese and English, 6,625 CTC classes: blank, 6,623 characters, space),
written by paddle2onnx (opset 12). A PP-LCNetV3 convolutional backbone (hard-swish, learnable affine
blocks, squeeze-excitation gates), an SVTR neck with two transformer blocks (one q/k/v projection
reshaped to (N, L, 3, 8, 15) and transposed to (3, N, 8, L, 15) before q, k, v are sliced off axis 0;
QKᵀ, Softmax, A·V; LayerNorm written out as ReduceMean/Sub/Pow/Sqrt/Div) and a linear CTC head with a
softmax over 40 time steps. The file is copied unchanged (10.9 MB); its character list is in its
metadata (``character``, one per line), as rapidocr reads it.

Also writes ``ppocr_rec_samples.npz``: text lines rendered in DejaVu Sans at the recogniser's height
(48 px, black on white), turned into the model input by rapidocr's own ``resize_norm_img`` (padded to
320 px wide), what rapidocr's ``TextRecognizer`` reads from each (text and mean confidence), and each
rendered character's column range in the input (-1 for spaces).

    /work/devenv/bin/pip install --no-deps --target /tmp/rapidocr rapidocr-onnxruntime==1.4.4 \\
        opencv-python-headless pyclipper shapely six tqdm
    PYTHONPATH=/tmp/rapidocr python tools/make_ppocr_fixture.py
"""
import argparse
import importlib.metadata
import pathlib
import shutil

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "thirdparty"
MODEL = "ch_PP-OCRv4_rec_infer.onnx"
LINES = ["Relevance 2024", "ONNX Runtime"]
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
HEIGHT, LEFT = 48, 8


def render(text: str, font) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A BGR text line (as cv2.imread gives rapidocr) and each character's column range."""
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("RGB", (right - left + 2 * LEFT, HEIGHT), "white")
    ImageDraw.Draw(image).text((LEFT - left, (HEIGHT - (bottom - top)) // 2 - top), text, font=font, fill="black")
    columns = []
    for i, ch in enumerate(text):
        start = LEFT - left + font.getlength(text[:i])
        columns.append((-1, -1) if ch == " " else (int(round(start)), int(round(start + font.getlength(ch)))))
    return np.array(image)[:, :, ::-1].copy(), columns


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer
    from rapidocr_onnxruntime.utils import read_yaml

    dist = importlib.metadata.distribution("rapidocr-onnxruntime")
    package = pathlib.Path(dist.locate_file("rapidocr_onnxruntime"))
    config = read_yaml(str(package / "config.yaml"))["Rec"]
    config["model_path"] = str(package / "models" / MODEL)
    recogniser = TextRecognizer(config)
    font = ImageFont.truetype(FONT, 28)
    inputs, read, confidence, glyphs = [], [], [], []
    _, height, width = config["rec_img_shape"]
    for text in LINES:
        image, columns = render(text, font)
        (result, score), = recogniser(image)[0]
        inputs.append(recogniser.resize_norm_img(image, width / height))
        read.append(result)
        confidence.append(score)
        glyphs.append(columns + [(-1, -1)] * (max(map(len, LINES)) - len(columns)))
        print(f"{text!r}: rapidocr reads {result!r} ({score:.4f})")
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(package / "models" / MODEL, args.out / MODEL)
    np.savez_compressed(args.out / "ppocr_rec_samples.npz", x=np.stack(inputs).astype(np.float32),
                        text=np.array(LINES), read=np.array(read), confidence=np.array(confidence),
                        glyphs=np.array(glyphs, np.int64), package=np.array(f"rapidocr-onnxruntime {dist.version}"))
    print(f"wrote {args.out / MODEL} ({(args.out / MODEL).stat().st_size / 1e6:.1f} MB) and ppocr_rec_samples.npz")


if __name__ == "__main__":
    main()
