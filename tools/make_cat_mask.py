#!/usr/bin/env python
"""Write ``models/samples/cat_mask.png``: a rough hand-drawn outline of the cat in ``cat.png``.

The cat's head fills most of the 224×224 crop; the polygon below (traced by eye on a 16-pixel
grid) leaves out the blurred background at the top right and bottom right. White = cat. The
relevance-mass and pointing-game metrics of ``onnx_lrp.evaluation.metrics`` read it (``onnx-lrp evaluate
--masks models/samples``); a mask this coarse only separates the cat from that background, so
compare a method against the ``random`` baseline, whose relevance mass accuracy is about the
mask's area share (printed below).
"""
import pathlib

import numpy as np
from PIL import Image, ImageDraw

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "models" / "samples" / "cat_mask.png"
SIZE = 224
# (x, y) vertices, clockwise from the top-left corner
CAT = [(0, 0), (190, 0), (203, 28), (211, 64), (214, 112), (206, 140), (192, 160), (184, 190), (178, 223),
       (0, 223)]


def main():
    mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(mask).polygon(CAT, fill=255)
    mask.save(OUT, optimize=True)
    share = (np.asarray(mask) > 127).mean()
    print(f"wrote {OUT.relative_to(ROOT)}: {share:.1%} of the image is cat")


if __name__ == "__main__":
    main()
