"""The family table: compile, conservation and Zennit agreement of onnx-lrp on exported models.

No torch here: ``make_family_fixtures.py --table`` runs this on the stored reduced models,
``--full`` on freshly exported full-size ones.
"""
from __future__ import annotations

import collections
import json
import pathlib
import time

import numpy as np
import onnx
import onnxruntime as ort

import onnx_lrp
from onnx_lrp.canonize import canonize
from onnx_lrp.graph import load_detached
from onnx_lrp.ops import base as cat
from onnx_lrp.rules import Norm
from onnx_lrp.weights import make_initializer, tensor_value

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
SIGNAL_BOUND = 5.0


def op_counts(path) -> dict[str, int]:
    return dict(sorted(collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node).items()))


def max_output_error(path, x, logits) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float(np.abs(session.run(None, {session.get_inputs()[0].name: x})[0] - logits).max())


def bounds_for(x):
    """ZBox bounds: the normalised images of pixel values 0 and 1 for images, ±5 for signals."""
    if x.ndim == 4 and x.shape[1] == 3:
        return (0 - IMAGENET_MEAN) / IMAGENET_STD, (1 - IMAGENET_MEAN) / IMAGENET_STD
    return np.float32(-SIGNAL_BOUND), np.float32(SIGNAL_BOUND)


def without_biases(model) -> tuple[onnx.ModelProto, object]:
    """The canonized model (BN folded, biases fused) with every Conv/ConvTranspose/Gemm bias zeroed,
    and the weight store its large initializers live in (keep it while the model is used)."""
    proto, _, store = load_detached(str(model) if isinstance(model, (str, pathlib.Path)) else model)
    canonized = canonize(proto, _first_float_output(proto)).model
    index = {t.name: i for i, t in enumerate(canonized.graph.initializer)}
    for node in canonized.graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm") and len(node.input) > 2 and node.input[2] in index:
            tensor = canonized.graph.initializer[index[node.input[2]]]
            zero = np.zeros_like(tensor_value(tensor))
            tensor.CopyFrom(make_initializer(tensor.name, zero, store))
    return canonized, store


def lrp0_composite():
    """Epsilon with ε = 0 on every linear op and Norm without stabiliser on sums and pools."""
    return onnx_lrp.composites.EpsilonComposite(
        epsilon=0.0, category_map={cat.SUM: Norm(0.0), cat.AVGPOOL: Norm(0.0)})


def pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel())[0, 1])


def evaluate(name, exporter, path, x, reference=None) -> list[dict]:
    """Rows of the table for one exported model. ``reference``: composite -> (target, Zennit relevance)."""
    reference = reference or {}
    low, high = bounds_for(x)
    runs = [("epsilon_plus_flat", "epsilon_plus_flat", path, None),
            ("epsilon_gamma_box", onnx_lrp.composites.EpsilonGammaBox(low=low, high=high), path, None),
            ("lrp0 (no bias)", lrp0_composite(), None, "conservation")]
    runs += [(c, c if c != "epsilon_gamma_box" else onnx_lrp.composites.EpsilonGammaBox(low=low, high=high),
              path, "zennit") for c in reference if c not in ("epsilon_plus_flat", "epsilon_gamma_box")]
    rows = []
    for label, composite, model, purpose in runs:
        row = {"family": name, "exporter": exporter, "composite": label}
        start = time.perf_counter()
        try:
            source, store = (str(model), None) if model is not None else without_biases(path)
            target = reference[label][0] if label in reference else None
            result = onnx_lrp.Explainer(source, composite=composite).explain(x, target=target)
        except onnx_lrp.OnnxLrpError as exc:
            row.update(compiled="no", note=f"{type(exc).__name__}: {exc}"[:160])
            rows.append(row)
            continue
        row.update(compiled="yes", finite=bool(np.isfinite(result.relevance).all()),
                   seconds=round(time.perf_counter() - start, 2))
        if purpose == "conservation":
            row["conservation_error"] = float(np.abs(result.conservation() - 1).max())
        if label in reference:
            ours, theirs = result.relevance, reference[label][1]
            row["pearson"] = min(pearson(a, b) for a, b in zip(ours, theirs))
            row["max_rel_error"] = max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(ours, theirs))
        rows.append(row)
    return rows


def evaluate_stored(directory) -> list[dict]:
    directory = pathlib.Path(directory)
    manifest = json.loads((directory / "MANIFEST.json").read_text())
    rows = []
    for name, entry in manifest.items():
        with np.load(directory / f"{name}__inputs.npz") as data:
            x = data["x"]
        reference = {}
        for composite in entry.get("zennit", []):
            with np.load(directory / f"{name}__{composite}.npz") as data:
                reference[composite] = (data["target"], data["relevance"])
        for exporter, info in entry["files"].items():
            rows += evaluate(name, exporter, directory / info["file"], x, reference)
    return rows


def print_table(rows) -> None:
    header = ["family", "exporter", "composite", "compiled", "finite", "conservation_error", "pearson",
              "max_rel_error", "seconds", "note"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = []
        for key in header:
            value = row.get(key, "")
            if isinstance(value, float) and key != "seconds":
                value = f"{value:.2e}" if key != "pearson" else f"{value:.6f}"
            cells.append(str(value))
        print("| " + " | ".join(cells) + " |")


def _first_float_output(proto) -> str:
    """The output the Explainer explains by default (e.g. skl2onnx's probabilities, not its label)."""
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)
    return next(o.name for o in proto.graph.output if o.type.tensor_type.elem_type in floats)
