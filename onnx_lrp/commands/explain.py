"""``onnx-lrp MODEL INPUT``: explain a model's predictions and write heatmaps (the default command)."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import quote

import numpy as np
import onnx

from . import options, text
from .. import executor, heatmap, inputs, metadata, pipeline, render, resume
from ..cli import UsageError
from ..errors import InvalidInput, InvalidTarget, OutputError
from ..explainer import Explainer
from ..graph import FLOAT_TYPES, ReadModel
from ..progress import Progress

HELP = "explain a model's prediction on inputs and write heatmaps (the default command)"
USAGE = "onnx-lrp MODEL INPUT [options]"
DESCRIPTION = ("Explain the predictions of an ONNX model with Layer-wise Relevance Propagation. For each input "
               "it writes NAME.relevance.npy, NAME.heatmap.png, NAME.overlay.png (images) and NAME.json (a "
               "summary) to --out, and prints what the model predicted; --html adds index.html, a report of "
               "every input.")
EXAMPLES = """\
examples:
  onnx-lrp models/efficientnet_lite0.onnx models/samples/cat.png
      explain the predicted class of the picture; results in lrp-out/
  onnx-lrp model.onnx photos/ --target "tiger cat" --composite epsilon_gamma_box --out results
  onnx-lrp model.onnx batch.npy --json > summary.json
  onnx-lrp model.onnx photos/ --html --out report
      also report/index.html: every input as a card, sortable and filterable, one file
  onnx-lrp encoder.onnx "a sentence" --tokenizer tokenizer.json --target-text "another sentence"
      a model taking token ids: tokens coloured by relevance, NAME.tokens.html, NAME.json

INPUT: a .npy (one sample, or a batch when it has the model's rank) or .npz (every array, or --key)
holding the model's input as is; an image (.png, .jpg, ...) preprocessed as the model's
onnx_lrp.preprocess metadata says, or as --size/--layout/--channels/--scale/--mean/--std say;
or a directory of these, explained file by file.

exit codes: 0 success, 1 failure, 2 usage error"""

DEFAULT_BATCH = 8
HTML_NAME = "index.html"


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL", help="the ONNX model file")
    parser.add_argument("input", metavar="INPUT", nargs="?",
                        help=".npy, .npz, image file, or a directory of these; or a text for a model taking token ids")

    lrp = options.add_composite(parser)
    options.add_target(lrp)
    options.add_graph_io(parser)
    lrp.add_argument("--labels", metavar="FILE",
                     help="class names, one per line (or a JSON list); default the model's onnx_lrp.labels")
    options.add_providers(lrp)
    lrp.add_argument("--batch-size", type=options.positive_int, metavar="N",
                     help=f"inputs per onnxruntime run (default {DEFAULT_BATCH})")
    lrp.add_argument("--keep-layers", action="store_true",
                     help="also save the relevance at every layer to NAME.layers.npz")

    pre = parser.add_argument_group("input preprocessing (overrides the model's onnx_lrp.preprocess metadata)")
    pre.add_argument("--size", type=options.positive_int, nargs=2, metavar=("H", "W"), help="resize images to H×W")
    pre.add_argument("--layout", choices=metadata.LAYOUTS, help="model input layout: nchw, nhwc or flat")
    pre.add_argument("--channels", choices=metadata.CHANNELS, help="channel order: rgb, bgr or gray")
    pre.add_argument("--scale", type=float, metavar="S", help="divide pixels (0-255) by S first")
    pre.add_argument("--mean", type=float, nargs="+", metavar="M", help="subtract, per channel, after scaling")
    pre.add_argument("--std", type=float, nargs="+", metavar="S", help="divide by, per channel, last")
    pre.add_argument("--key", metavar="NAME", help="explain only this array of .npz inputs")

    out = parser.add_argument_group("output")
    options.add_out(out, "relevance, heatmaps and summaries", default="lrp-out")
    out.add_argument("--cmap", default="coldnhot", choices=heatmap.colormap_names(), metavar="NAME",
                     help=f"heatmap colour map: {', '.join(heatmap.colormap_names())} (default %(default)s)")
    options.add_html(out, HTML_NAME, "a report of every input (a card each: picture, overlay, heatmap, prediction, "
                     "conservation; sortable and filterable)")
    out.add_argument("--save-explainer", metavar="PATH",
                     help="also save the compiled explainer as a standalone ONNX model")
    out.add_argument("--resume", action="store_true",
                     help="skip inputs whose files in --out are complete (from an earlier, interrupted run)")
    options.add_json(out, "the summaries")
    options.add_quiet(out)
    text.add_arguments(parser)


# --- the run -----------------------------------------------------------------------------------
@dataclass
class Run:
    """State of one ``explain`` run."""

    args: object
    explainer: Explainer
    model_input: inputs.ModelInput
    pre: metadata.Preprocess
    labels: list[str] | None
    target: object
    out: Path
    progress: Progress
    load_s: float
    results: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    compiled: dict[tuple, float] = field(default_factory=dict)
    first_shape: tuple | None = None
    warned_labels: bool = False
    warned_uniform: bool = False
    html: object = None  # onnx_lrp.html.ExplainReport with --html
    html_path: Path | None = None
    feeds: dict = field(default_factory=dict)
    threads: pipeline.Threads = field(default_factory=pipeline.Threads.for_cores)
    skipped: int = 0  # --resume: inputs whose files were complete
    files_done: int = 0
    files_total: int = 0
    stopped: int | None = None  # the exit code of a run stopped by SIGINT/SIGTERM

    @property
    def human(self) -> bool:
        return not (self.args.json or self.args.quiet)


def run(args) -> int:
    if text.wanted(args):  # a text for a model taking token ids: commands/text.py
        return text.run(args)
    with executor.extra_session_config(executor.NO_SPINNING):  # the pipeline's threads need the cores too
        return _run(args)


def _run(args) -> int:
    start = time.perf_counter()
    state, files = _prepare(args, start)
    try:
        _explain_files(state, files)
    finally:
        state.progress.close()
    if args.save_explainer and not state.stopped:
        shape = None if state.first_shape is None else (1,) + state.first_shape
        state.explainer.save(args.save_explainer, input_shape=shape)
    return _finish(state, time.perf_counter() - start)


def _prepare(args, start: float) -> tuple[Run, list[Path]]:
    """Check everything that can be checked before the (slow) explainer is built, then build it."""
    model = ReadModel.read(args.model)  # read once: metadata here, the graph in the Explainer
    meta = metadata.from_proto(model.proto, repr(args.model))
    labels = metadata.read_labels_file(args.labels) if args.labels else meta.labels
    try:
        given = meta.preprocess.override(size=args.size, layout=args.layout, channels=args.channels,
                                         scale=args.scale, mean=_tuple(args.mean), std=_tuple(args.std))
    except metadata.MetadataError as exc:
        raise UsageError(str(exc)) from None
    pre = inputs.resolve(given, inputs.ModelInput.from_proto(model.proto))
    target = options.resolve_target(args.target, labels, args.model)
    kwargs = options.composite_kwargs(args, pre)
    files, skipped = inputs.list_inputs(args.input)
    out = render.prepare_out_dir(args.out)
    if args.save_explainer:
        _check_parent(args.save_explainer)

    explainer = options.build(Explainer, model, composite=args.composite, providers=options.providers(args),
                              input_name=options.input_name(args), output_name=args.output_name, **kwargs)
    integer = explainer._elem[explainer.input_name] not in FLOAT_TYPES
    model_input = inputs.ModelInput.from_dims(explainer.input_name, explainer.input_shape, integer)
    state = Run(args, explainer, model_input, inputs.resolve(given, model_input), labels, target, out,
                Progress(len(files), enabled=False if args.quiet else None), time.perf_counter() - start,
                files_total=len(files))
    state.html_path = options.html_path(args, HTML_NAME)
    if state.html_path is not None:
        state.html = _html_report(state)
    state.feeds = options.feeds(args)
    if state.human:
        for note in explainer.notes:
            state.progress.write(f"note: {note}", file=sys.stdout)
        if skipped:
            state.progress.write(f"note: skipped {skipped} files in {args.input!r} that are not "
                                 f"{'/'.join(inputs.SUFFIXES)}", file=sys.stdout)
    return state, files


def _explain_files(state: Run, files: list[Path]) -> None:
    """Read, explain and write overlapped (:mod:`onnx_lrp.pipeline`); SIGINT/SIGTERM stop it cleanly."""
    stages = pipeline.Stages(read=partial(_read, state), admit=partial(_admit, state),
                             explain=partial(_explain_batch, state), done=partial(_file_done, state))
    with pipeline.StopSignal() as stop:
        state.files_done = pipeline.run(files, stages, state.args.batch_size or DEFAULT_BATCH, state.threads, stop)
    state.stopped = stop.exit_code


def _read(state: Run, path: Path):
    """The samples of one file (on a reader thread), with its errors as actions that record them."""
    try:
        for sample in inputs.load(path, state.model_input, state.pre, state.args.key):
            bad = int((~np.isfinite(sample.x)).sum())
            if bad:
                yield partial(_fail, state, sample.where, InvalidInput(f"{sample.where} holds {bad} NaN/Inf "
                                                                       "values; clean or impute them first"))
            else:
                yield sample
    except InvalidInput as exc:
        yield partial(_fail, state, str(path), exc)


def _admit(state: Run, sample: inputs.Sample):
    """Name the sample (in input order); with --resume, a job recording it when its outputs are complete."""
    sample.name = render.unique_name(sample.name, state.names)
    summary = resume.complete_summary(state.out, sample, state.args.keep_layers) if state.args.resume else None
    if summary is None:
        return None
    state.skipped += 1
    return partial(_write_skipped, state, sample, summary)


def _file_done(state: Run, path: Path) -> None:
    state.progress.advance(1, path.name)


def _explain_batch(state: Run, samples: list[inputs.Sample]) -> list:
    """Explain one batch on this thread; returns a write job per sample (run on a writer thread)."""
    x = _as_input_dtype(state.explainer, np.concatenate([s.x for s in samples]))
    shape = x.shape[1:]
    feeds = _batch_feeds(state, len(x))
    # with feeds, the shapes of every input key the compiled graph: explain() compiles it
    compile_s = _compile(state, shape) if not feeds else 0.0
    start = time.perf_counter()
    try:
        result = state.explainer.explain(x, target=state.target, keep_layers=state.args.keep_layers,
                                         batch_size=state.args.batch_size, feeds=feeds or None)
    except InvalidInput as exc:
        return [lambda s=s, exc=exc: partial(_fail, state, s.where, exc) for s in samples]
    explain_s = time.perf_counter() - start
    if state.first_shape is None:
        state.first_shape = shape
    return [partial(_write_sample, state, sample, result, i, {"load": state.load_s, "compile": compile_s if i == 0
                                                              else 0.0, "explain": explain_s, "batch": len(samples)})
            for i, sample in enumerate(samples)]


def _as_input_dtype(explainer, x: np.ndarray) -> np.ndarray:
    """An integer input (token ids, bytes) in the dtype the model declares."""
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(explainer._elem[explainer.input_name]))
    return x if np.issubdtype(dtype, np.floating) else x.astype(dtype)


def _batch_feeds(state: Run, n: int) -> dict:
    """The --feed arrays for a batch of ``n``: a leading axis of 1 on a batched input is repeated."""
    out = {}
    for name, value in state.feeds.items():
        declared = state.explainer._declared.get(name)
        free = bool(declared) and not (isinstance(declared[0], int) and declared[0] > 0)
        out[name] = np.repeat(value, n, axis=0) if free and value.ndim and value.shape[0] == 1 and n > 1 else value
    return out


def _compile(state: Run, shape: tuple) -> float:
    """Compile (and check the target against) a new input shape once; returns the seconds it took."""
    if shape in state.compiled:
        return 0.0
    start = time.perf_counter()
    compiled = state.explainer.compile(shape, keep_layers=state.args.keep_layers)
    state.compiled[shape] = time.perf_counter() - start
    n = compiled.num_classes
    if isinstance(state.target, int) and state.target >= n:
        raise InvalidTarget(f"--target {state.target} is out of range: {state.args.model!r} has {n} outputs "
                            f"(0..{n - 1}); pass an index in range, a label name or 'pred'")
    if state.labels is not None and len(state.labels) != n and not state.warned_labels:
        state.warned_labels = True
        if not state.args.quiet:
            state.progress.write(f"onnx-lrp: warning: {len(state.labels)} labels for {n} outputs; "
                                 "check --labels or the model's onnx_lrp.labels")
    return state.compiled[shape]


def _write_sample(state: Run, sample: inputs.Sample, result, i: int, timings: dict):
    """Write one input's files (on a writer thread); returns the action recording it (main thread)."""
    name = sample.name
    start = time.perf_counter()
    relevance = result.relevance[i:i + 1]
    layers = {k: v[i:i + 1] for k, v in result.layers.items()} if state.args.keep_layers else None
    try:
        files = render.write_result(state.out, name, relevance, state.pre, state.args.cmap, sample.image, layers)
    except InvalidInput as exc:  # e.g. a NaN relevance the heatmap refuses
        return partial(_fail, state, sample.where, exc)
    timings = {**timings, "write": time.perf_counter() - start}
    files["summary"] = str(state.out / f"{name}.json")
    summary = summarize(state, sample, name, result, i, files, timings)
    uniform = _uniform_note(state, relevance)
    if uniform:
        summary["notes"].append(uniform)
    card = _card(state, sample, summary, relevance, layers)
    render.save_json(files["summary"], summary)  # last: a summary on disk means every file is complete
    return partial(_record, state, summary, card, uniform)


def _write_skipped(state: Run, sample: inputs.Sample, summary: dict):
    """--resume: an input whose files are complete gets only its report card (on a writer thread)."""
    card = None
    if state.html is not None:
        relevance = np.load(summary["files"]["relevance"], allow_pickle=False)
        layers = dict(np.load(summary["files"]["layers"])) if state.args.keep_layers else None
        card = _card(state, sample, summary, relevance, layers)
    return partial(_record, state, summary, card, None, printed=False)


def _record(state: Run, summary: dict, card, uniform: str | None, printed: bool = True) -> None:
    """Record one written input (main thread, input order): its result, report card and line."""
    state.results.append(summary)
    if card is not None:
        state.html.add_card(card)
    if state.human and printed:
        state.progress.write(_summary_line(summary), file=sys.stdout)
        if uniform and not state.warned_uniform:
            state.warned_uniform = True
            state.progress.write(f"note: {uniform}", file=sys.stdout)


def summarize(state: Run, sample: inputs.Sample, name: str, result, i: int, files: dict, timings: dict) -> dict:
    """The JSON summary of one explained input."""
    flat = result.output.reshape(len(result.output), -1)
    predicted, target = int(result.prediction[i]), int(result.target[i])
    output = float(result.target_output[i])
    total = float(result.relevance[i].sum(dtype=np.float64))
    return {
        "input": sample.source,
        "index": sample.index,
        "name": name,
        "model": str(state.args.model),
        "composite": state.args.composite,
        "providers": list(state.explainer.providers),
        "predicted": predicted,
        "predicted_label": _label(state.labels, predicted),
        "predicted_output": _finite(flat[i, predicted]),
        "target": target,
        "target_label": _label(state.labels, target),
        "output": _finite(output),
        "relevance_sum": _finite(total),
        "conservation": _finite(total / output) if output != 0 else None,
        "input_shape": list(sample.x.shape),
        "preprocess": state.pre.to_json() if sample.image is not None else None,
        "notes": list(result.notes),
        "files": files,
        "timings_s": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in timings.items()},
    }


def _summary_line(s: dict) -> str:
    where = inputs.describe(s["input"], s["index"])
    line = f"{where}: {_named(s['predicted_label'], s['predicted'], s['predicted_output'])}"
    if s["target"] == -1:
        line += f"; explaining the weighted output (Σ weights ⊙ output = {s['output']:.4g})"
    elif s["target"] != s["predicted"]:
        line += f"; explaining {_named(s['target_label'], s['target'], s['output'])}"
    total = "?" if s["relevance_sum"] is None else f"{s['relevance_sum']:.4g}"
    ratio = "" if s["conservation"] is None else f" ({s['conservation']:.3g} × the output)"
    return f"{line}; relevance sum {total}{ratio}"


def _uniform_note(state: Run, relevance: np.ndarray) -> str | None:
    """Why a heatmap is one flat colour, when the first layer's Flat rule covers the whole input."""
    if relevance.size < 2 or np.ptp(relevance) != 0 or "flat" not in state.args.composite:
        return None
    return (f"the relevance is the same for every input feature: {state.args.composite} gives the first layer "
            "the Flat rule, which spreads relevance evenly over its receptive field, here the whole input (a "
            "dense first layer); use --composite epsilon or epsilon_plus for a per-feature explanation")


def _named(label, index: int, output) -> str:
    value = "?" if output is None else f"{output:.4g}"
    return f"{label} (class {index}, output {value})" if label is not None else f"class {index} (output {value})"


def _finish(state: Run, total_s: float) -> int:
    failed = len(state.errors)
    page = state.html.write(state.html_path) if state.html is not None else None
    if state.args.json:
        doc = {"model": str(state.args.model), "composite": state.args.composite,
               "providers": list(state.explainer.providers), "out": str(state.out),
               "notes": list(state.explainer.notes), "results": state.results, "errors": state.errors,
               "skipped": state.skipped, "timings_s": {"load": round(state.load_s, 4), "total": round(total_s, 4)}}
        print(json.dumps(doc, indent=2, allow_nan=False))
    elif state.human and state.results:
        explained = len(state.results) - state.skipped
        if len(state.results) == 1 and explained == 1:
            print("wrote " + ", ".join(state.results[0]["files"].values()))
        else:
            print(f"explained {explained} inputs in {total_s:.1f} s; heatmaps, relevance and "
                  f"summaries in {str(state.out)}/")
        if state.skipped:
            print(f"skipped {state.skipped} inputs whose files in {str(state.out)}/ were complete (--resume)")
        if state.args.save_explainer:
            print(f"saved the explainer to {state.args.save_explainer}")
        if page is not None:
            print(f"report: {page}")
    if failed and len(state.results) + failed > 1:
        print(f"onnx-lrp: error: {failed} of {len(state.results) + failed} inputs failed (see above)",
              file=sys.stderr)
    if state.stopped:
        print(f"onnx-lrp: stopped after {state.files_done} of {state.files_total} input files; rerun with --resume "
              "to continue", file=sys.stderr)
        return state.stopped
    return 1 if failed else 0


def _fail(state: Run, where: str, exc: Exception) -> None:
    message = " ".join(str(exc).split())
    state.errors.append({"input": where, "error": message})
    if state.html is not None:
        state.html.add_error(where, message)
    state.progress.write(f"onnx-lrp: error: {message}")


# --- the HTML report (--html) ---------------------------------------------------------------------
def _html_report(state: Run):
    from ..html import ExplainReport

    args = state.args
    facts = {"model": str(args.model), "input": str(args.input), "composite": args.composite,
             "target": args.target, "providers": ", ".join(state.explainer.providers)}
    return ExplainReport(f"onnx-lrp: {Path(str(args.model)).name}", facts, state.explainer.notes, args.cmap)


def _card(state: Run, sample: inputs.Sample, summary: dict, relevance: np.ndarray, layers):
    """The input's card (None without --html): its picture (the image, or the array read back through
    the preprocessing), overlay and heatmap; links to its files, relative to the page."""
    from ..html import picture_from_input

    if state.html is None:
        return None
    picture = sample.image if sample.image is not None else picture_from_input(sample.x, state.pre)
    here = state.html_path.resolve().parent
    links = {kind: quote(Path(os.path.relpath(Path(path).resolve(), here)).as_posix())
             for kind, path in summary["files"].items()}
    return state.html.card(summary, picture, render.relevance_map(relevance, state.pre), layers, links)


# --- helpers ---------------------------------------------------------------------------------
def _check_parent(path) -> None:
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise OutputError(f"cannot save the explainer to {str(path)!r}: directory {str(parent)!r} does not exist; "
                          "create it or choose another --save-explainer path")


def _label(labels, index: int):
    return labels[index] if labels is not None and 0 <= index < len(labels) else None


def _finite(value):
    value = float(value)
    return value if np.isfinite(value) else None


def _tuple(values):
    return None if values is None else tuple(values)
