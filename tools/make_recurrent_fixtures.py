#!/usr/bin/env python
"""Build the recurrent-layer fixtures of tests/test_recurrent_exports.py.

Run with an environment that has torch and onnxscript (the ``dev`` extra)::

    python tools/make_recurrent_fixtures.py            # writes tests/fixtures/recurrent/
    python tools/make_recurrent_fixtures.py --out DIR  # elsewhere, e.g. to diff a rebuild

1. PyTorch exports. For each of ``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` (tanh), one direction and
   bidirectional, batch-first, 3 features, hidden size 4, no biases (so ε = 0 conserves exactly),
   followed by a bias-free ``nn.Linear`` on the flattened outputs of 5 steps (3 classes), it writes
   ``<op>_<uni|bi>_<legacy|dynamo>.onnx`` from ``torch.onnx.export(dynamo=False)`` (opset 17) and
   ``torch.onnx.export(dynamo=True)`` (opset 18), and ``<op>_<uni|bi>.npz`` with the input ``x``
   (2 samples), the targets, torch's logits, torch's gradient of each target logit with respect
   to x (autograd, float64) and the layer's weights in the ONNX op's layout (``W``, ``R``, ``B``;
   gate order i, o, f, c for LSTM and z, r, h for GRU; GRU is torch's linear_before_reset=1).

   What the exporters write (torch 2.14.1): the TorchScript exporter an ``LSTM``/``GRU``/``RNN``
   op with its zero initial states as ``Expand`` of a zero constant; the dynamo exporter an
   ``LSTM``/``GRU`` op with no initial states, but the tanh ``RNN`` unrolled: one ``MatMul`` for
   the input projection of all steps on the time-major input, ``Slice`` per step along axis 0,
   ``MatMul``/``Add``/``Tanh`` per step and a ``Concat`` along axis 0.

   ``stacked_<LSTM|GRU>_<legacy|dynamo>.onnx`` and ``stacked_<op>.npz``: two bidirectional layers
   (``num_layers=2``), the head on the last step's output; both exporters write two op nodes
   with the reshaping between them.

2. ``silero_vad_16k_sequence.onnx`` from the ``silero-vad`` package (MIT licence, Silero Team):
   a trained voice-activity detector, STFT-like Conv encoder then an ``LSTM`` (hidden 128) over a
   sequence of 576-sample chunks (512 new samples + 64 of context, 16 kHz), one speech
   probability per chunk. Its state inputs ``h``/``c`` become zero initializers (the start of a
   stream) and the chunk sequence gets a batch axis: input ``chunks`` [1, T, 576], output
   ``speech_probs`` [1, T]. Written as ``silero_vad_sequence.onnx`` with ``silero_vad.npz``: a
   synthetic 16 kHz signal (silence, a voiced 160 Hz harmonic burst, silence) cut into chunks.
   Needs ``pip install --no-deps --target DIR silero-vad`` and ``--silero DIR``.
"""
import argparse
import pathlib
import warnings

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

STEPS, FEATURES, HIDDEN, CLASSES = 5, 3, 4, 3
#: torch gate blocks -> ONNX gate order (LSTM: i f g o -> i o f c; GRU: r z n -> z r h)
ORDER = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN": [0]}


class Classifier(nn.Module):
    def __init__(self, op, bidirectional):
        super().__init__()
        self.rnn = getattr(nn, op)(FEATURES, HIDDEN, batch_first=True, bidirectional=bidirectional, bias=False)
        self.head = nn.Linear(HIDDEN * (2 if bidirectional else 1) * STEPS, CLASSES, bias=False)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y.flatten(1))


def onnx_weights(rnn: nn.Module, op: str) -> dict:
    """W [D, G·H, F], R [D, G·H, H], B [D, 2·G·H] (zeros) in the ONNX op's gate order."""
    def reorder(w):
        blocks = np.split(w.detach().double().numpy(), len(ORDER[op]))
        return np.concatenate([blocks[i] for i in ORDER[op]])
    suffixes = [""] + (["_reverse"] if rnn.bidirectional else [])
    W = np.stack([reorder(getattr(rnn, f"weight_ih_l0{s}")) for s in suffixes])
    R = np.stack([reorder(getattr(rnn, f"weight_hh_l0{s}")) for s in suffixes])
    return {"W": W, "R": R, "B": np.zeros((len(suffixes), 2 * W.shape[1]))}


def float64_reference(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, dict]:
    """The model in float64 and its reference for ``x``: the input, the predicted classes, the logits
    and the gradient of the predicted logits with respect to the input."""
    model64 = model.double()
    x64 = x.double().requires_grad_(True)
    logits = model64(x64)
    targets = logits.argmax(1)
    grad = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x64)[0]
    return model64, {"x": x.numpy(), "targets": targets.numpy(), "logits": logits.detach().numpy(),
                     "gradient": grad.numpy()}


def export_classifiers(out: pathlib.Path) -> None:
    for index, (op, bidirectional) in enumerate((op, bi) for op in ("LSTM", "GRU", "RNN") for bi in (False, True)):
        torch.manual_seed(100 + index)
        model = Classifier(op, bidirectional).eval()
        x = torch.randn(2, STEPS, FEATURES)
        stem = f"{op}_{'bi' if bidirectional else 'uni'}"
        for exporter, dynamo, opset in (("legacy", False, 17), ("dynamo", True, 18)):
            path = out / f"{stem}_{exporter}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), str(path), dynamo=dynamo, opset_version=opset, input_names=["x"],
                                  output_names=["logits"], external_data=False)
            proto = onnx.load(str(path))
            ops = sorted({n.op_type for n in proto.graph.node})
            print(f"{path.name}: {path.stat().st_size} bytes, ops {ops}")
        model64, reference = float64_reference(model, x)
        np.savez(out / f"{stem}.npz", **reference, head=model64.head.weight.detach().numpy(),
                 **onnx_weights(model64.rnn, op))


class Stacked(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.rnn = getattr(nn, op)(FEATURES, HIDDEN, num_layers=2, batch_first=True, bidirectional=True, bias=False)
        self.head = nn.Linear(2 * HIDDEN, CLASSES, bias=False)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y[:, -1])


def export_stacked(out: pathlib.Path) -> None:
    for index, op in enumerate(("LSTM", "GRU")):
        torch.manual_seed(200 + index)
        model = Stacked(op).eval()
        x = torch.randn(2, STEPS, FEATURES)
        for exporter, dynamo, opset in (("legacy", False, 17), ("dynamo", True, 18)):
            path = out / f"stacked_{op}_{exporter}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), str(path), dynamo=dynamo, opset_version=opset, input_names=["x"],
                                  output_names=["logits"], external_data=False)
            print(f"{path.name}: {path.stat().st_size} bytes")
        np.savez(out / f"stacked_{op}.npz", **float64_reference(model, x)[1])


def silero(out: pathlib.Path, package: pathlib.Path) -> None:
    source = package / "silero_vad" / "data" / "silero_vad_16k_sequence.onnx"
    model = onnx.load(str(source))
    graph = model.graph
    for name in ("h", "c"):
        graph.initializer.append(numpy_helper.from_array(np.zeros((1, 1, 128), np.float32), name))
    inputs = [i for i in graph.input if i.name == "input"]
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info("chunks", TensorProto.FLOAT, [1, "T", 576])])
    axis0 = numpy_helper.from_array(np.array([0], np.int64), "batch_axis")
    graph.initializer.append(axis0)
    graph.node.insert(0, helper.make_node("Squeeze", ["chunks", "batch_axis"], [inputs[0].name], name="drop_batch"))
    graph.node.append(helper.make_node("Unsqueeze", ["speech_probs", "batch_axis"], ["speech_probs_batch"],
                                       name="add_batch"))
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info("speech_probs_batch", TensorProto.FLOAT, [1, "T"])])
    onnx.checker.check_model(model)
    path = out / "silero_vad_sequence.onnx"
    onnx.save(model, str(path))
    print(f"{path.name}: {path.stat().st_size} bytes")
    rate, chunk, context = 16000, 512, 64
    t = np.arange(12 * chunk) / rate
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(len(t)) * 0.002  # quiet noise floor
    voiced = (t >= 4 * chunk / rate) & (t < 9 * chunk / rate)
    envelope = np.sin(np.pi * np.clip((t - 4 * chunk / rate) / (5 * chunk / rate), 0, 1)) ** 2
    harmonics = sum(np.sin(2 * np.pi * 160 * k * t + k) / k for k in range(1, 12))
    signal += voiced * envelope * 0.3 * harmonics * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
    padded = np.concatenate([np.zeros(context), signal])
    chunks = np.stack([padded[i * chunk:i * chunk + chunk + context] for i in range(len(signal) // chunk)])
    np.savez(out / "silero_vad.npz", chunks=chunks[None].astype(np.float32), voiced_chunks=np.arange(4, 9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "recurrent")
    parser.add_argument("--silero", type=pathlib.Path, help="folder the silero-vad package was installed to")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    export_classifiers(args.out)
    export_stacked(args.out)
    if args.silero:
        silero(args.out, args.silero)


if __name__ == "__main__":
    main()
