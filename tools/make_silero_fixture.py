#!/usr/bin/env python
"""Copy silero-vad's streaming voice-activity model into tests/fixtures/thirdparty/.

``silero-vad`` (MIT licence, Silero Team) ships ``data/silero_vad_16k_op15.onnx``: a torch export
(opset 15) that takes ``input`` (batch, 512) audio at 16 kHz, the recurrent ``state``
(2, batch, 128) — its batch on axis 1 — and ``sr``; an STFT as a Conv, a conv encoder, an LSTM
cell (exported with three ``If`` nodes that test the state's and the input's shapes) and a
sigmoid decoder, giving ``output`` (batch, 1), the speech probability, and ``stateN``. The graph is
copied unchanged; only metadata_props are added (source, licence).

    /work/devenv/bin/pip install --no-deps --target /tmp/silero silero-vad==6.2.3
    python tools/make_silero_fixture.py --silero /tmp/silero
"""
import argparse
import pathlib

import onnx

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "thirdparty"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--silero", type=pathlib.Path, required=True, help="folder silero-vad was installed to")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    model = onnx.load(str(args.silero / "silero_vad" / "data" / "silero_vad_16k_op15.onnx"))
    version = next(args.silero.glob("silero_vad-*.dist-info")).name.split("-")[1].removesuffix(".dist")
    for key, value in (("onnx_lrp.source", f"silero-vad {version}: silero_vad/data/silero_vad_16k_op15.onnx"),
                       ("onnx_lrp.license", "MIT (Silero Team)")):
        model.metadata_props.add(key=key, value=value)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "silero_vad_16k_op15.onnx"
    onnx.save(model, str(path))
    print("wrote", path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
