"""The README's screenshots of the HTML reports, made from the shipped models with the command line
and photographed in headless Chromium (tests/browser.py):

- docs/report_explain.png: ``onnx-lrp models/efficientnet_lite0.onnx PICTURES --keep-layers --html``
  over the shipped pictures (the top of index.html);
- docs/report_layers.png: the same page, the cat's "relevance through the network" opened;
- docs/report_evaluate.png: ``onnx-lrp evaluate ... --html report.html`` on the two ImageNet
  samples with LRP, gradient, occlusion and random, masks and the randomisation check.

    PYTHONPATH=$PWD python docs/make_report_screenshots.py      # a few minutes on 2 cores

Screenshots are quantised to 128 colours to stay small.
"""
from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import Browser  # noqa: E402

from onnx_lrp import cli  # noqa: E402

MODEL = "models/efficientnet_lite0.onnx"  # relative: the commands run in a scratch directory linking models/
SAMPLES = Path("models/samples")
PICTURES = ("cat.png", "coffee.png", "cat_cifar10.png", "textline.png", "textline_rotated.png")
EVALUATE = ["evaluate", MODEL, str(SAMPLES / "cat_efficientnet_lite0.npy"), str(SAMPLES / "coffee_efficientnet_lite0.npy"),
            "--masks", str(SAMPLES), "--methods", "lrp", "gradient", "occlusion:window=32,stride=16", "random",
            "--metrics", "region_perturbation", "relevance_mass_accuracy", "pointing_game", "model_randomisation",
            "--randomisation-layers", "3", "--randomisation-samples", "2",
            "--fail-under", "lrp:relevance_mass_accuracy=0.5", "--fail-under", "random:relevance_mass_accuracy=0.95"]
OPEN_LAYERS = """(async () => {
  const d = document.querySelector('.card details'); d.open = true;
  d.closest('.card').scrollIntoView();
  await new Promise(r => setTimeout(r, 300));
  await Promise.all(Array.from(document.images).filter(i => i.src).map(i => i.decode().catch(() => 0)));
})()"""


def save(png: bytes, path: Path, crop_height: int | None = None) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if crop_height:
        image = image.crop((0, 0, image.width, min(crop_height, image.height)))
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.chdir(tmp)  # so that the pages show the README's commands' paths
        (tmp / "models").symlink_to(ROOT / "models")
        (tmp / "pictures").mkdir()
        for name in PICTURES:
            shutil.copy(ROOT / SAMPLES / name, tmp / "pictures" / name)
        code = cli.main([MODEL, "pictures", "--keep-layers", "--html", "--out", str(tmp / "explain"), "--quiet"])
        assert code == 0, code
        code = cli.main(EVALUATE + ["--html", str(tmp / "report.html")])
        os.chdir(ROOT)
        assert code in (0, 1), code  # 1: the random baseline failed its gate, which the page shows too
        with Browser.start(width=1040, height=820) as browser:
            page = browser.open((tmp / "explain" / "index.html").as_uri())
            save(page.screenshot(), ROOT / "docs" / "report_explain.png")
            page.eval(OPEN_LAYERS)
            save(page.screenshot(), ROOT / "docs" / "report_layers.png")
        with Browser.start(width=1280, height=2000) as browser:
            page = browser.open((tmp / "report.html").as_uri())
            save(page.screenshot(), ROOT / "docs" / "report_evaluate.png")
            assert page.console_errors == [], page.console_errors
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
