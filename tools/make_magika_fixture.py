#!/usr/bin/env python
"""Copy Magika's byte-level file-type classifier into tests/fixtures/thirdparty/.

``magika`` (Google, Apache-2.0) ships ``models/standard_v3_3/model.onnx``: a tf2onnx export of a
JAX model (opset 15) that takes ``bytes`` (N, 2048) int32 — the first 1024 and the last 1024
bytes of a file, stripped of leading/trailing whitespace and padded with 256 — one-hot encodes
them inside the graph (Equal + Cast), then Dense + GELU (written out), LayerNorm (written out as
moments), a Conv, GlobalMaxPool, LayerNorm, Dense, and a softmax written out as
Exp/ReduceSum/Div over 214 content types. The graph is copied unchanged; only metadata_props
are added (labels, source, licence). Also writes ``magika_samples.npz``: the model input for two
small texts (Python and JSON), prepared as Magika prepares a file's bytes.

    /work/devenv/bin/pip install --no-deps --target /tmp/magika magika==1.0.3
    PYTHONPATH=/tmp/magika python tools/make_magika_fixture.py
"""
import argparse
import importlib.metadata
import json
import pathlib

import numpy as np
import onnx

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "thirdparty"
SAMPLES = {
    "python": b'import json\n\n\ndef load(path):\n    """Read a JSON file."""\n    with open(path) as f:\n'
              b'        return json.load(f)\n\n\nif __name__ == "__main__":\n    print(load("config.json"))\n',
    "json": b'{\n  "name": "onnx-lrp",\n  "version": "0.1.0",\n  "dependencies": {\n    "numpy": ">=1.24",\n'
            b'    "onnx": ">=1.15"\n  },\n  "keywords": ["lrp", "onnx", "explainability"]\n}\n',
}


def features(content: bytes, config: dict) -> np.ndarray:
    """Magika's model input for a small file: stripped, first/last bytes, padded with 256."""
    beg_size, end_size, pad = config["beg_size"], config["end_size"], config["padding_token"]
    stripped = content.strip()
    beg = list(stripped[:beg_size])
    end = list(stripped[-end_size:])
    return np.array(beg + [pad] * (beg_size - len(beg)) + [pad] * (end_size - len(end)) + end, np.int32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    dist = importlib.metadata.distribution("magika")
    folder = pathlib.Path(dist.locate_file("magika/models/standard_v3_3"))
    config = json.loads((folder / "config.min.json").read_text())
    model = onnx.load(str(folder / "model.onnx"))
    for key, value in (("onnx_lrp.labels", json.dumps(config["target_labels_space"])),
                       ("onnx_lrp.source", f"magika {dist.version}: magika/models/standard_v3_3/model.onnx"),
                       ("onnx_lrp.license", "Apache-2.0 (Google LLC)")):
        model.metadata_props.add(key=key, value=value)
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(args.out / "magika_standard_v3_3.onnx"))
    np.savez(args.out / "magika_samples.npz", **{k: features(v, config)[None] for k, v in SAMPLES.items()})
    print("wrote", args.out / "magika_standard_v3_3.onnx", "and magika_samples.npz")


if __name__ == "__main__":
    main()
