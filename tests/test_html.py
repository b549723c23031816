"""HTML reports (:mod:`onnx_lrp.html`): built from the shipped models, opened in a real headless
Chromium (:mod:`tests.browser`): no console errors, every image decodes, sorting and filtering
work, the screenshot is not blank, and hostile labels and file names show as text and run
nothing. Without Chromium the browser tests skip and say why; the markup tests still run."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import onnx_lrp
from onnx_lrp import inputs, metadata
from onnx_lrp.evaluation import Gate, Settings, evaluate
from onnx_lrp.html import ExplainReport, picture_from_input
from onnx_lrp.html.cards import SCRIPT
from onnx_lrp.html.layers import layer_map

from browser import Browser, find_chromium

ROOT = Path(__file__).resolve().parent.parent
MODELS, SAMPLES = ROOT / "models", ROOT / "models" / "samples"
HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "\"'><svg onload=alert(3)>", "a & b"]
LOAD_ALL = """(async () => {
  document.querySelectorAll('details').forEach(d => d.open = true);
  for (let k = 0; k < 200 && document.querySelector('img[data-src]'); k++) {
    for (const img of document.querySelectorAll('img[data-src]')) { img.scrollIntoView(); break; }
    await new Promise(r => setTimeout(r, 20));
  }
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return {total: imgs.length, waiting: document.querySelectorAll('img[data-src]').length,
          broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)};
})()"""


def hostile_model(tmp_path: Path, name: str, file_name: str | None = None) -> Path:
    """A shipped model whose class names are hostile markup (the first classes) under ``file_name``."""
    model = onnx.load(str(MODELS / f"{name}.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    labels = json.loads(props[metadata.LABELS_KEY])
    labels[:len(HOSTILE)] = HOSTILE
    for p in model.metadata_props:
        if p.key == metadata.LABELS_KEY:
            p.value = json.dumps(labels)
    path = tmp_path / (file_name or f"{name}.onnx")
    onnx.save(model, str(path))
    return path


def digits_explanation(tmp_path: Path, n: int = 40):
    explainer = onnx_lrp.Explainer(hostile_model(tmp_path, "digits_mlp"), composite="epsilon")
    x = np.load(SAMPLES / "digits_test.npz")["x"][:n].astype(np.float32) / 16.0  # the model takes 0-1
    return explainer.explain(x)


@pytest.fixture(scope="module")
def browser():
    path, why = find_chromium()
    if path is None:
        pytest.skip(why)
    with Browser.start(path) as b:
        yield b


def assert_not_blank(png: bytes) -> None:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), np.float64)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert (pixels < 200).mean() > 0.02 and pixels.std() > 20, "the screenshot is (almost) blank"


def assert_clean(page) -> None:
    assert page.console_errors == []
    assert page.dialogs == [], "a hostile label ran as script"
    assert page.eval("document.querySelectorAll('script').length") <= 1


# --- markup ------------------------------------------------------------------------------------
def test_explain_report_escapes_labels_and_admits_only_its_own_script(tmp_path):
    report = ExplainReport(HOSTILE[0], facts={"model": HOSTILE[1]}, notes=[HOSTILE[2]])
    report.add_explanation(digits_explanation(tmp_path, 12), names=[HOSTILE[3]] * 12)
    text = report.html()
    for bad in HOSTILE[:3]:
        assert bad not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "a &amp; b" in text
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    policy = re.search(r'Content-Security-Policy" content="([^"]+)"', text).group(1)
    assert f"script-src 'sha256-{digest}'" in policy and "default-src 'none'" in policy and "img-src data:" in policy
    assert text.count("<script>") == 1
    assert not re.search(r'(src|href)="(https?:)?//', text), "nothing may load from the network"


def test_picture_from_input_inverts_the_preprocessing():
    pre = metadata.read(MODELS / "efficientnet_lite0.onnx").preprocess
    model_input = inputs.ModelInput("x", (None, 3, 224, 224))
    sample = inputs.load_image(SAMPLES / "cat.png", model_input, pre)
    picture = picture_from_input(sample.x, pre)
    original = np.asarray(sample.image.convert("RGB").resize((224, 224), Image.BICUBIC), np.int16)
    assert picture.size == (224, 224)
    assert np.abs(np.asarray(picture, np.int16) - original).max() <= 1
    bgr = metadata.read(MODELS / "text_direction.onnx").preprocess  # channel order is undone too
    line = inputs.load_image(SAMPLES / "textline.png", inputs.ModelInput("x", (None, 3, 48, 192)), bgr)
    expected = np.asarray(line.image.convert("RGB").resize((192, 48), Image.BICUBIC), np.int16)
    assert np.abs(np.asarray(picture_from_input(line.x, bgr), np.int16) - expected).max() <= 1
    assert picture_from_input(sample.x, metadata.Preprocess(layout="nchw")) is None  # scaling unknown


def test_layer_map_sums_channels_and_shows_vectors_as_strips():
    r = np.arange(2 * 4 * 4, dtype=np.float64).reshape(1, 2, 4, 4)
    np.testing.assert_array_equal(layer_map(r), r[0].sum(axis=0))
    np.testing.assert_array_equal(layer_map(np.moveaxis(r, 1, -1)), r[0].sum(axis=0))  # (1, H, W, C)
    assert layer_map(np.ones((1, 1280, 1, 1))).shape == (1, 1280)
    assert layer_map(np.ones((1, 10))).shape == (1, 10)
    assert layer_map(np.ones((1, 1))) is None


def test_explanation_repr_html_shows_picture_overlay_heatmap():
    explainer = onnx_lrp.Explainer(MODELS / "cifar10_cnn.onnx")
    res = explainer.explain(np.load(SAMPLES / "cat_cifar10.npy"))
    text = res._repr_html_()
    assert [m for m in re.findall(r'alt="(\w+)"', text)] == ["picture", "overlay", "heatmap"]
    assert "cat (class 3)" in text


# --- in the browser ----------------------------------------------------------------------------
def test_explain_report_in_browser(browser, tmp_path):
    res = digits_explanation(tmp_path)
    report = ExplainReport("digits", facts={"model": "digits_mlp.onnx"})
    report.add_explanation(res, names=[f"digit_{i:02d}" for i in range(len(res.relevance))])
    path = report.write(tmp_path / "index.html")
    page = browser.open(path.as_uri())
    assert page.eval("document.querySelectorAll('.card').length") == len(res.relevance)
    assert page.eval("document.querySelectorAll('img[src]').length") < 3 * len(res.relevance)  # lazy
    assert_not_blank(page.screenshot())

    images = page.eval(LOAD_ALL)
    assert images == {"total": 3 * len(res.relevance), "waiting": 0, "broken": []}
    # every hostile label that was predicted is on the page as text
    shown = page.eval("Array.from(document.querySelectorAll('dd')).map(d => d.textContent).join('\\n')")
    predicted = {res.labels[k] for k in res.prediction}
    for label in set(HOSTILE) & predicted:
        assert label in shown
    assert predicted & set(HOSTILE[:3]), "the test needs a hostile label among the predictions"

    page.eval("document.getElementById('sort').value = 'score';"
              "document.getElementById('sort').dispatchEvent(new Event('change'));"
              "document.getElementById('dir').click()")  # descending
    order = page.eval("Array.from(document.querySelectorAll('.card')).map(c => +c.dataset.score)")
    scores = res.output[np.arange(len(res.output)), res.prediction]
    np.testing.assert_allclose(order, np.sort(scores)[::-1], rtol=1e-6)
    first = page.eval("document.querySelector('.card .name').textContent")
    assert first == f"digit_{int(np.argmax(scores)):02d}"

    label = HOSTILE[0] if HOSTILE[0] in predicted else sorted(predicted)[0]
    page.eval(f"const s = document.getElementById('label'); s.value = {json.dumps(label)};"
              "s.dispatchEvent(new Event('change'))")
    visible = page.eval("Array.from(document.querySelectorAll('.card')).filter(c => !c.hidden).length")
    assert visible == sum(res.labels[k] == label for k in res.prediction)
    assert page.eval("document.getElementById('count').textContent").startswith(f"{visible} of ")
    assert_clean(page)


def test_layers_in_browser(browser, tmp_path):
    res = onnx_lrp.Explainer(MODELS / "cifar10_cnn.onnx").explain(np.load(SAMPLES / "cat_cifar10.npy"),
                                                                   keep_layers=True)
    path = tmp_path / "notebook.html"
    path.write_text(f"<!DOCTYPE html><html><body>{res._repr_html_()}</body></html>", encoding="utf-8")
    page = browser.open(path.as_uri())
    images = page.eval(LOAD_ALL)
    maps = sum(layer_map(v) is not None for v in res.layers.values())
    assert images == {"total": 3 + maps, "waiting": 0, "broken": []}
    points = page.eval("Array.from(document.querySelectorAll('svg circle title')).map(t => t.textContent)")
    assert len(points) == len(res.layers) and points[0].startswith("0: ") and "Σ R" in points[0]
    assert_not_blank(page.screenshot())
    assert_clean(page)


def test_evaluation_report_in_browser(browser, tmp_path):
    model = hostile_model(tmp_path, "cifar10_cnn", "<img src=x onerror=alert(4)>.onnx")
    settings = Settings(steps=4, randomisation_layers=2, randomisation_samples=2, faithfulness_runs=4)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("cat_cifar10.npy", "cat_cifar10.png"):
        shutil.copy(SAMPLES / name, data / name)
    report = evaluate(model, [data], masks=SAMPLES, methods=["lrp", "gradient", "random"],
                      metrics=["region_perturbation", "relevance_mass_accuracy", "model_randomisation"],
                      settings=settings, progress=False)
    report.check([Gate.parse("lrp:relevance_mass_accuracy=0.5"), Gate.parse("random:aopc_morf=100")])
    doc = report.to_dict()
    assert "examples" not in doc and "preprocess" not in doc and json.dumps(doc)
    table = report._repr_html_()
    assert table.count('class="pass"') >= 1 and table.count('class="fail"') >= 1
    path = report.write_html(tmp_path / "report.html")
    page = browser.open(path.as_uri())
    images = page.eval(LOAD_ALL)
    assert images == {"total": 2 * (1 + 1 + 3), "waiting": 0, "broken": []}  # picture, mask, 3 methods
    assert page.eval("document.title") == "onnx-lrp evaluate: <img src=x onerror=alert(4)>.onnx"
    assert page.eval("document.querySelectorAll('svg').length") == 2  # curves, randomisation
    assert page.eval("document.querySelectorAll('td.fail').length") == 1
    assert_not_blank(page.screenshot())
    assert_clean(page)


# --- the command line --------------------------------------------------------------------------
def test_explain_command_writes_index_html(browser, tmp_path):
    from onnx_lrp import cli

    pictures = tmp_path / "in"
    pictures.mkdir()
    for name in ("digit.png", "digit.npy"):
        shutil.copy(SAMPLES / name, pictures / name)
    (pictures / "broken.png").write_bytes(b"not a png")
    out, pages = tmp_path / "out", tmp_path / "pages"
    pages.mkdir()
    code = cli.main([str(MODELS / "digits_mlp.onnx"), str(pictures), "--composite", "epsilon", "--html",
                     str(pages / "digits.html"), "--out", str(out), "--quiet"])
    assert code == 1  # broken.png failed; the report says so and shows the others
    assert not (out / "index.html").exists()
    page = browser.open((pages / "digits.html").as_uri())
    assert page.eval("Array.from(document.querySelectorAll('.card .name')).map(n => n.textContent)") == \
        ["digit", "digit_2"]
    assert page.eval(LOAD_ALL) == {"total": 6, "waiting": 0, "broken": []}  # the .npy is shown as a picture too
    assert "broken.png" in page.eval("document.body.textContent")
    links = page.eval("Array.from(document.querySelectorAll('.card a')).map(a => a.getAttribute('href'))")
    assert "../out/digit.heatmap.png" in links and all((pages / link).is_file() for link in links)
    assert_clean(page)


def test_evaluate_command_writes_html(tmp_path):
    from onnx_lrp import cli

    missing = tmp_path / "nowhere" / "report.html"  # refused before the evaluation runs
    assert cli.main(["evaluate", str(MODELS / "cifar10_cnn.onnx"), str(SAMPLES / "cat_cifar10.npy"),
                     "--html", str(missing)]) == 1

    out = tmp_path / "out"
    code = cli.main(["evaluate", str(MODELS / "cifar10_cnn.onnx"), str(SAMPLES / "cat_cifar10.npy"), "--masks",
                     str(SAMPLES), "--methods", "lrp", "random", "--metrics", "region_perturbation",
                     "relevance_mass_accuracy", "--steps", "4", "--out", str(out), "--html", "--quiet"])
    assert code == 0
    assert (out / "report.json").is_file()
    text = (out / "report.html").read_text(encoding="utf-8")
    assert text.count('<img src="data:image/') == 1 + 1 + 2 and "Region perturbation" in text


def test_heatmap_thumbnail_is_the_colour_map_to_a_step():
    """Indexed PNG heatmaps: the map quantised to 256 steps along the colour map. coldnhot's steepest
    segment spans 255 levels over 1/6 of the range, so a half step is at most 255 * 6 / 255 / 2 = 3."""
    from onnx_lrp.heatmap import apply_cmap, normalize_symmetric
    from onnx_lrp.html.images import heatmap_uri

    m = np.random.default_rng(0).standard_normal((40, 50))
    for cmap in ("coldnhot", "bwr"):
        uri = heatmap_uri(m, cmap)
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"), int)
        assert np.abs(shown - apply_cmap(normalize_symmetric(m), cmap).astype(int)).max() <= 3


def test_tokens_are_escaped_and_coloured_by_sign():
    from onnx_lrp.html import tokens_html

    text = tokens_html(["<b>", "cat", "&"], [1.0, -0.5, 0.0])
    assert "<b>" not in text and "&lt;b&gt;" in text and ">&amp;<" in text
    colours = re.findall(r"background:rgb\((\d+),(\d+),(\d+)\)", text)
    assert colours == [("255", "0", "0"), ("128", "128", "255"), ("255", "255", "255")]  # bwr: red, blue, white
