"""Size and opening time of the explain HTML report for many inputs, in headless Chromium.

Explains the shipped EfficientNet-Lite0 samples (cat.png, coffee.png) once, then builds reports of
N cards from those results (each card makes its own thumbnails, as the command does per input;
the images do not compress across cards, so the size per card is what real inputs give), writes
each, and opens it in a fresh headless Chromium (tests/browser.py). Prints one table:

    PYTHONPATH=$PWD python tools/html_report_size.py            # N = 10, 100, 1000
    PYTHONPATH=$PWD python tools/html_report_size.py --counts 1000 --keep-layers

Columns: N; file size; seconds to build the cards and write the file; in Chromium:
DOMContentLoaded and load (from navigation start), the first screen's images decoded, and one
sort of all cards by score; "floor": DOMContentLoaded of a page of the same size that holds only
a comment (reading the bytes), opened the same way, so a loaded machine shows as such. The load
average is printed with the table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import Browser, find_chromium  # noqa: E402

FIRST_SCREEN = """(async () => {
  const imgs = Array.from(document.querySelectorAll('img[src]'))
      .filter(i => i.getBoundingClientRect().top < innerHeight);
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  const nav = performance.getEntriesByType('navigation')[0];
  return {dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, first: performance.now(),
          images: imgs.length, broken: imgs.filter(i => !i.naturalWidth).length};
})()"""
SORT = """(() => {
  const t = performance.now(), s = document.getElementById('sort');
  s.value = 'score'; s.dispatchEvent(new Event('change'));
  return performance.now() - t;
})()"""


def explained(keep_layers: bool):
    """(summary, picture, relevance map, layers) of the shipped samples, from the real model."""
    from onnx_lrp import Explainer, inputs, metadata
    from onnx_lrp.html.cards import summary_of
    from onnx_lrp.render import relevance_map

    model = ROOT / "models" / "efficientnet_lite0.onnx"
    explainer = Explainer(model)
    model_input = inputs.ModelInput.from_dims(explainer.input_name, explainer.input_shape)
    pre = inputs.resolve(metadata.read(model).preprocess, model_input)
    results = []
    for name in ("cat", "coffee"):
        sample = inputs.load_image(ROOT / "models" / "samples" / f"{name}.png", model_input, pre)
        res = explainer.explain(sample.x, keep_layers=keep_layers)
        layers = {k: v for k, v in res.layers.items()} if keep_layers else None
        results.append((summary_of(res, 0, name), sample.image, relevance_map(res.relevance, pre), layers))
    return results


def measure(n: int, results, out: Path, chromium: str) -> dict:
    from onnx_lrp.html import ExplainReport

    start = time.perf_counter()
    report = ExplainReport(f"{n} inputs", facts={"model": "efficientnet_lite0.onnx"})
    for i in range(n):
        summary, picture, rmap, layers = results[i % len(results)]
        report.add({**summary, "name": f"{summary['name']}_{i:04d}"}, picture, rmap, layers,
                   links={"heatmap": f"{summary['name']}_{i:04d}.heatmap.png"})
    path = report.write(out / f"index_{n}.html")
    build = time.perf_counter() - start
    floor = out / f"floor_{n}.html"
    floor.write_text("<!DOCTYPE html><html><body><p>floor</p><!--" + "x" * path.stat().st_size + "--></body></html>")
    with Browser.start(chromium) as browser:
        page = browser.open(path.as_uri(), timeout=300)
        timing = page.eval(FIRST_SCREEN)
        sort_ms = page.eval(SORT)
        errors = page.console_errors
    with Browser.start(chromium) as browser:
        floor_ms = browser.open(floor.as_uri(), timeout=300).eval(FIRST_SCREEN)["dcl"]
    return {"n": n, "mb": path.stat().st_size / 1e6, "build": build, **timing, "sort": sort_ms, "floor": floor_ms,
            "errors": errors}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=3, help="openings per N (median reported)")
    parser.add_argument("--keep-layers", action="store_true", help="cards carry relevance through the network")
    args = parser.parse_args(argv)
    chromium, why = find_chromium()
    if chromium is None:
        print(why, file=sys.stderr)
        return 1
    results = explained(args.keep_layers)
    print("| inputs | file | build + write | DOMContentLoaded | load | first screen decoded | sort all | floor |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.counts:
            runs = [measure(n, results, Path(tmp), chromium) for _ in range(args.repeat)]
            keys = ("mb", "build", "dcl", "load", "first", "sort", "floor")
            med = {k: statistics.median(r[k] for r in runs) for k in keys}
            errors = sorted({e for r in runs for e in r["errors"]})
            print(f"| {n} | {med['mb']:.1f} MB | {med['build']:.1f} s | {med['dcl']:.0f} ms | {med['load']:.0f} ms | "
                  f"{med['first']:.0f} ms ({runs[0]['images']} images) | {med['sort']:.0f} ms | {med['floor']:.0f} ms |"
                  + (f" errors: {errors}" if errors else ""))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nload average {load} on {os.cpu_count()} CPUs; medians of {args.repeat} openings, each in a fresh Chromium")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
