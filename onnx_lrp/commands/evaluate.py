"""``onnx-lrp evaluate MODEL INPUTS...``: measure how faithful explanations are and gate on it.

The work is in :mod:`onnx_lrp.evaluation` (Python: ``from onnx_lrp.evaluation import evaluate, Gate``);
this module is the command line. Inputs stream through one batch at a time (bounded memory: one batch
of samples and relevance, plus running sums of the metrics); a progress bar is drawn on a terminal.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import options
from .. import inputs, metadata, render
from ..attribution import METHODS
from ..cli import UsageError
from ..evaluation import DEFAULT_METHODS, DEFAULT_METRICS, METRIC_GROUPS, Gate, Report, Settings, evaluate
from ..errors import InvalidInput
from ..evaluation.run import method_specs, metric_groups
from ..evaluation.settings import parse_literal
from ..explainer import Explainer
from ..graph import ReadModel

HELP = "measure how faithful explanations are (region perturbation, pointing game, ...) and gate on it"
USAGE = "onnx-lrp evaluate MODEL INPUTS... [--masks DIR] [--methods ...] [--metrics ...] [options]"
EXAMPLES = """examples:
  onnx-lrp evaluate models/efficientnet_lite0.onnx models/samples/cat_efficientnet_lite0.npy \\
      --masks models/samples --out report/ --html report.html
  onnx-lrp evaluate model.onnx data/ --methods lrp gradient occlusion:window=8,stride=4 random \\
      --metrics region_perturbation relevance_mass_accuracy --masks masks/ \\
      --fail-under lrp:relevance_mass_accuracy=0.6 --fail-under lrp:morf_lerf_area=0.5

--out DIR writes report.json, report.xml (JUnit, one case per method × metric) and the PNG curves;
--html adds report.html there (or writes it to --html PATH): one file to open or send.
methods: """ + ", ".join(METHODS) + """ (options as name:key=value,key=value)
metrics: """ + ", ".join(METRIC_GROUPS) + """
exit codes: 0 all gates pass, 1 a gate failed or an error, 2 usage error (an unknown method, method
option, metric or gate included)"""


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL", help="the ONNX model")
    parser.add_argument("inputs", metavar="INPUTS", nargs="+",
                        help=".npy/.npz/image files or directories of them (preprocessed as the model's metadata says)")
    parser.add_argument("--masks", metavar="DIR",
                        help="ground-truth masks (white = object): for sample cat_model_3, cat_model_3_mask, "
                             "cat_model_mask or cat_mask (.png, .npy, ...), or a file named cat_model_3")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                        help=f"default: {' '.join(DEFAULT_METHODS)}")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), metavar="METRIC",
                        help=f"default: {' '.join(DEFAULT_METRICS)}")
    group = options.add_composite(parser)
    options.add_target(group)
    options.add_providers(group)
    measure = parser.add_argument_group("measurement")
    measure.add_argument("--patch", type=options.positive_int, default=None,
                         help="patch size (default: min(H, W) // 14)")
    measure.add_argument("--steps", type=options.positive_int, default=Settings.steps,
                         help="perturbation steps (default 16)")
    measure.add_argument("--fraction", type=float, default=Settings.fraction,
                         help="share of patches removed by the last step (default 1.0)")
    measure.add_argument("--baseline", default="mean", type=parse_literal,
                         help="value of removed features: a number or 'mean' (default)")
    measure.add_argument("--faithfulness-runs", type=options.positive_int, default=Settings.faithfulness_runs,
                         metavar="N", help=f"random patch subsets per sample (default {Settings.faithfulness_runs})")
    measure.add_argument("--faithfulness-subset", type=float, default=Settings.faithfulness_subset, metavar="F",
                         help="share of the patches in each subset (default 0.1)")
    measure.add_argument("--randomisation-layers", type=options.positive_int, default=Settings.randomisation_layers,
                         metavar="N", help="checkpoints along the cascade, the last with every layer random (default 4)")
    measure.add_argument("--randomisation-samples", type=options.positive_int,
                         default=Settings.randomisation_samples, metavar="N",
                         help="samples (the first ones) the randomisation check explains (default 4)")
    measure.add_argument("--randomisation", choices=("absolute", "signed"), default=Settings.randomisation,
                         help="randomisation similarity reported and gated: Spearman of |R| (default; a sign-flipped "
                              "copy counts as similar) or of signed R")
    measure.add_argument("--pointing-tolerance", type=float, default=0.0, metavar="PX",
                         help="pointing game: a hit within this distance of the mask counts (default 0)")
    measure.add_argument("--batch-size", type=options.positive_int, default=Settings.batch_size,
                         help="samples per batch (default 8)")
    measure.add_argument("--seed", type=int, default=0)
    gate = parser.add_argument_group("gates")
    gate.add_argument("--fail-under", action="append", default=[], metavar="[METHOD:]METRIC=VALUE",
                      help="exit 1 when the metric is below VALUE (every method unless one is named)")
    gate.add_argument("--fail-over", action="append", default=[], metavar="[METHOD:]METRIC=VALUE",
                      help="exit 1 when the metric is above VALUE (for aopc_lerf, randomisation_spearman)")
    out = parser.add_argument_group("output")
    options.add_out(out, "report.json, report.xml (JUnit) and the PNG perturbation curves (default: none written)")
    options.add_html(out, "report.html", "the report (metrics with gates, curves, every method's heatmaps of the "
                     "first samples beside their masks, the randomisation check)")
    options.add_json(out, "the report")
    options.add_quiet(out)


def run(args) -> int:
    # methods, metrics and gates are checked before the (slow) evaluation so that a typo fails at once
    gates = _checked_usage(args)
    html = options.html_path(args, "report.html")
    model = ReadModel.read(args.model)  # read once: metadata here, the graph in the Explainer
    meta = metadata.from_proto(model.proto, repr(args.model))
    pre = inputs.resolve(meta.preprocess, inputs.ModelInput.from_proto(model.proto))
    kwargs = options.composite_kwargs(args, pre)
    target = options.resolve_target(args.target, meta.labels, args.model)
    if target is not None and not isinstance(target, int):
        raise UsageError(f"--target {args.target!r}: evaluate compares methods on one class per input; pass "
                         "'pred', a label name or a class index")
    explainer = options.build(Explainer, model, composite=args.composite, providers=options.providers(args),
                              **kwargs)
    report = evaluate(explainer, args.inputs, masks=args.masks, methods=args.methods, metrics=args.metrics,
                      target=target, settings=_settings(args), progress=False if args.quiet else None)
    report.check(gates)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    elif not args.quiet:
        print(report.table())
        for note in report.notes:
            print(f"note: {note}")
    if args.out:
        _write_reports(report, Path(args.out))
    if html is not None:
        if args.html is True:
            render.prepare_out_dir(html.parent)
        report.write_html(html)
    if args.quiet and not report.passed:
        for g in report.gates:
            if not g.passed:
                print(f"onnx-lrp: gate failed: {g.gate} [{g.method}]: {g.value}", file=sys.stderr)
    return 0 if report.passed else 1


def _checked_usage(args) -> list[Gate]:
    """The gates, with ``--methods``, ``--metrics`` and the gates checked: a mistake there is a
    usage error (exit 2) naming the valid choices."""
    try:
        method_specs(args.methods)
        metric_groups(args.metrics)
        return [Gate.parse(g, "under") for g in args.fail_under] + [Gate.parse(g, "over") for g in args.fail_over]
    except InvalidInput as exc:
        raise UsageError(str(exc)) from exc


def _settings(args) -> Settings:
    return Settings(patch=args.patch, steps=args.steps, fraction=args.fraction, baseline=args.baseline,
                    faithfulness_runs=args.faithfulness_runs, faithfulness_subset=args.faithfulness_subset,
                    randomisation_layers=args.randomisation_layers, randomisation_samples=args.randomisation_samples,
                    randomisation=args.randomisation,
                    pointing_tolerance=args.pointing_tolerance, batch_size=args.batch_size, seed=args.seed)


def _write_reports(report: Report, out: Path) -> None:
    from ..render import prepare_out_dir

    prepare_out_dir(out)
    report.write_json(out / "report.json")
    report.write_junit(out / "report.xml")
    report.write_plots(out)
