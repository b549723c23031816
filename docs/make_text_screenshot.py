"""The README's picture of an explained text: all-MiniLM-L6-v2 (built by tools/build_minilm.py)
explaining its similarity between two sentences, ``NAME.tokens.html`` photographed in headless
Chromium (tests/browser.py) as docs/text_minilm.png.

    python tools/build_minilm.py                              # once: build/minilm/ (~90 MB)
    PYTHONPATH=$PWD python docs/make_text_screenshot.py
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "docs"))

from browser import Browser  # noqa: E402
from make_report_screenshots import save  # noqa: E402

from onnx_lrp import cli  # noqa: E402

MODEL = Path("build/minilm/all-MiniLM-L6-v2.onnx")  # relative: the page shows the README's command's path
TEXT = "The new phone has a great camera but the battery dies quickly."
OTHER = "This smartphone takes excellent photos."


def main() -> int:
    os.chdir(ROOT)
    if not MODEL.is_file():
        raise SystemExit(f"{MODEL} is missing: run python tools/build_minilm.py first")
    with tempfile.TemporaryDirectory() as tmp:
        code = cli.main([str(MODEL), TEXT, "--target-text", OTHER, "--out", tmp, "--quiet"])
        assert code == 0, code
        page_path = next(Path(tmp).glob("*.tokens.html"))
        with Browser.start(width=900, height=330) as browser:
            page = browser.open(page_path.as_uri())
            save(page.screenshot(), ROOT / "docs" / "text_minilm.png")
            assert page.console_errors == [], page.console_errors
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
