"""Make docs/cat_efficientnet_lite0.png, the README's picture: the cat and its heatmap side by side.

The heatmap comes from the command line exactly as a user runs it (default composite and colour
map); this script only puts the two pictures next to each other and quantises the result to a
small palette PNG. Run from the repository root: ``.venv/bin/python docs/make_figure.py``.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "cat_efficientnet_lite0.png"
GAP = 8


def main() -> None:
    picture = ROOT / "models" / "samples" / "cat.png"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "onnx_lrp", str(ROOT / "models" / "efficientnet_lite0.onnx"),
                        str(picture), "--out", tmp], check=True)
        heat = Image.open(Path(tmp) / "cat.heatmap.png").convert("RGB")
    cat = Image.open(picture).convert("RGB")
    figure = Image.new("RGB", (cat.width + GAP + heat.width, cat.height), "white")
    figure.paste(cat, (0, 0))
    figure.paste(heat, (cat.width + GAP, 0))
    figure.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(OUT, optimize=True)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
