"""Option groups shared by the subcommands, defined once so that the commands cannot disagree.

Each ``add_*`` function adds one group to a subcommand's parser; the functions below them turn the
parsed values into what the library takes. A flag means the same thing, takes the same values and
fails the same way in every command that has it (``tests/test_cli_options.py`` checks this).
"""
from __future__ import annotations

import argparse
import difflib

import numpy as np

from .. import composites, rule_spec
from ..cli import UsageError
from ..errors import CompositeError, InvalidTarget

#: Short names for onnxruntime execution providers (``--providers cuda,cpu``).
PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "tensorrt": "TensorrtExecutionProvider", "dml": "DmlExecutionProvider",
                    "coreml": "CoreMLExecutionProvider", "openvino": "OpenVINOExecutionProvider"}


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


class _Default(str):
    """A default value told apart from the same value given on the command line (:func:`is_default`)."""


def is_default(value) -> bool:
    """Whether an option's value is its default rather than given (options made with a ``_Default``)."""
    return isinstance(value, _Default)


# --- groups --------------------------------------------------------------------------------------
def add_composite(parser, default: str = composites.DEFAULT):
    """``--composite`` with ``--low/--high`` (epsilon_gamma_box) and ``--rule/--op-rule``; returns the group."""
    group = parser.add_argument_group("explanation")
    group.add_argument("--composite", default=_Default(default), choices=composites.names(), metavar="NAME",
                       help=f"LRP rules to use: {', '.join(composites.names())} (default %(default)s)")
    group.add_argument("--low", type=float, nargs="+", metavar="V",
                       help="lowest input value for epsilon_gamma_box, one or one per channel "
                            "(default: pixel 0 through the model's preprocessing)")
    group.add_argument("--high", type=float, nargs="+", metavar="V",
                       help="highest input value for epsilon_gamma_box (default: pixel 255 through the preprocessing)")
    group.add_argument("--rule", action="append", type=_assignment("--rule"), metavar="NODE=RULE",
                       help="give a node (by name) a rule, e.g. --rule 'Mul_3=Pass' or --rule 'conv1=Epsilon(0.25)'; "
                            "repeatable; `onnx-lrp inspect MODEL` lists node names")
    group.add_argument("--op-rule", action="append", type=_assignment("--op-rule"), metavar="OPTYPE=RULE",
                       help="give every node of an op type a rule, e.g. --op-rule 'MaxPool=Norm'; repeatable")
    group.add_argument("--category-rule", action="append", type=_assignment("--category-rule"),
                       metavar="CATEGORY=RULE",
                       help="give every node of a category (`onnx-lrp inspect` shows them) a rule, e.g. "
                            "--category-rule 'dense=Gamma(0.25)' --category-rule 'attention_projection=Epsilon(0)' "
                            "(LXT's ViT recipe with --composite cp_lrp and convolution=Gamma(0.25)); repeatable")
    group.add_argument("--cell-epsilon", type=nonnegative_float, metavar="EPS",
                       help="ε of the ε-rule splitting an LSTM/GRU cell update c = f·c' + i·g (default 1e-6)")
    return group


def add_target(parser) -> None:
    parser.add_argument("--target", default="pred", metavar="CLASS",
                        help="what to explain: 'pred' (the predicted class, default), a label name, an index into "
                             "one sample's output, 'T,C' (an index per output axis, e.g. time step and class), or "
                             "FILE.npy (float weights shaped like one sample's output: explains Σ weights ⊙ output)")


def add_graph_io(parser) -> None:
    """``--input``, ``--feed`` and ``--output``: which graph inputs and output are explained."""
    group = parser.add_argument_group("graph inputs and output")
    group.add_argument("--input", dest="input_names", action="append", metavar="NAME",
                       help="the graph input to explain (default: the one floating-point input, else input_ids, "
                            "else the integer inputs indexing an embedding table)")
    group.add_argument("--feed", action="append", type=_feed, metavar="NAME=FILE.npy",
                       help="value of a graph input that is not explained (a state, a mask, a scalar), given whole "
                            "to every batch (a leading axis of 1 is repeated to the batch); repeatable")
    group.add_argument("--output", dest="output_name", metavar="NAME",
                       help="the graph output (or any tensor) to explain; default the first floating-point output")


def add_providers(parser) -> None:
    parser.add_argument("--providers", metavar="LIST",
                        help="onnxruntime execution providers, comma-separated, e.g. cuda,cpu "
                             "(default: CUDA when available, then CPU)")


def add_json(parser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as one JSON document on stdout instead of text")


def add_quiet(parser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors (no progress bar)")


def add_out(parser, what: str, default: str | None = None) -> None:
    parser.add_argument("--out", default=default, metavar="DIR",
                        help=f"directory for {what}" + (" (default %(default)s)" if default else ""))


def add_html(parser, name: str, what: str) -> None:
    """``--html [PATH]``: write ``what`` as one self-contained HTML file, by default ``name`` in --out."""
    parser.add_argument("--html", nargs="?", const=True, default=None, metavar="PATH",
                        help=f"write {what} as one self-contained HTML file to PATH (default: {name} in --out)")


# --- values ---------------------------------------------------------------------------------------
def html_path(args, name: str):
    """Where ``--html`` writes (a Path), or None without it; a missing directory is an OutputError, raised
    before the work. Bare ``--html``: ``name`` in --out (the current directory when there is no --out)."""
    from pathlib import Path

    from ..errors import OutputError

    if args.html is None:
        return None
    path = Path(getattr(args, "out", None) or ".") / name if args.html is True else Path(args.html)
    if args.html is not True and not path.resolve().parent.is_dir():
        raise OutputError(f"cannot write the HTML report {str(path)!r}: directory {str(path.parent)!r} does not "
                          "exist; create it or choose another --html path")
    return path


def providers(args) -> list[str] | None:
    """``--providers cuda,cpu`` as onnxruntime provider names (aliases expanded); None: the default."""
    text = getattr(args, "providers", None)
    if not text:
        return None
    return [PROVIDER_ALIASES.get(p.strip().lower(), p.strip()) for p in text.split(",") if p.strip()]


def composite_kwargs(args, pre) -> dict:
    """The composite's keyword arguments: ZBox bounds for epsilon_gamma_box (the flags, else pixels 0
    and 255 through the preprocessing ``pre``) and the --rule/--op-rule maps. Bad values: UsageError."""
    try:
        kwargs = pre.box_bounds(args.low, args.high, args.model) if args.composite == "epsilon_gamma_box" else {}
    except CompositeError as exc:
        raise UsageError(str(exc)) from None
    maps = (("name_map", args.rule), ("type_map", args.op_rule), ("category_map", getattr(args, "category_rule", None)))
    kwargs.update({k: dict(v) for k, v in maps if v})
    if getattr(args, "cell_epsilon", None) is not None:
        kwargs["cell_epsilon"] = args.cell_epsilon
    return kwargs


def feeds(args) -> dict:
    """``--feed NAME=FILE.npy`` values as {NAME: array}."""
    return dict(getattr(args, "feed", None) or [])


def input_name(args):
    """``--input`` as Explainer's input_name (one per run: INPUT holds its data)."""
    names = getattr(args, "input_names", None) or []
    if len(names) > 1:
        raise UsageError(f"--input is given {len(names)} times; the command line explains one input per run "
                         "(INPUT holds its data): pass the others with --feed NAME=FILE.npy")
    return names[0] if names else None


def _feed(text: str):
    """argparse type of --feed: ``NAME=FILE.npy`` -> (name, array)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--feed {text!r}: expected NAME=FILE.npy")
    try:
        return name, np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise argparse.ArgumentTypeError(f"--feed {text!r}: cannot read {path!r} as a .npy array ({exc})") from None


def _assignment(flag: str):
    """argparse type of --rule / --op-rule: ``NAME=RULE`` -> (name, Rule); a bad rule is a usage error."""
    def parse(text: str):
        try:
            return next(iter(rule_spec.parse_assignments([text], flag).items()))
        except CompositeError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def build(make, *args, **kwargs):
    """``make(*args, **kwargs)`` (an Explainer, an inspection) with composite errors (a --rule naming no
    node, an --op-rule naming no op type) as usage errors."""
    try:
        return make(*args, **kwargs)
    except CompositeError as exc:
        raise UsageError(str(exc)) from None


def resolve_target(text: str | None, labels: list[str] | None, model):
    """``pred`` -> None (the predicted class); a label name (exact, then ignoring case) or an index -> int;
    ``T,C`` -> a tuple index into one sample's output; ``FILE.npy`` -> float weights over it."""
    if text is None or text.strip().lower() in ("pred", "predicted"):
        return None
    if labels is None or text not in labels:
        if text.strip().endswith(".npy"):
            try:
                return np.load(text.strip(), allow_pickle=False).astype(np.float32)
            except (OSError, ValueError, EOFError) as exc:
                raise InvalidTarget(f"--target {text!r}: cannot read the weights ({exc})") from None
        parts = [p.strip() for p in text.split(",")]
        if len(parts) > 1:
            if not all(p.lstrip("-").isdigit() for p in parts):
                raise InvalidTarget(f"--target {text!r}: an index per output axis takes integers, e.g. 3,1")
            return tuple(int(p) for p in parts)
    if labels is not None and text in labels:
        return labels.index(text)
    if text.strip().isdigit():
        return _in_range(int(text), labels, model)
    if labels is None:
        raise InvalidTarget(f"--target {text!r} is not a class index and {str(model)!r} has no labels "
                            "(no onnx_lrp.labels metadata); pass an index, 'pred', or --labels FILE")
    folded = [i for i, label in enumerate(labels) if label.casefold() == text.strip().casefold()]
    if len(folded) == 1:
        return folded[0]
    close = difflib.get_close_matches(text, labels, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    raise InvalidTarget(f"--target {text!r} is not a label of {str(model)!r} ({len(labels)} labels); {hint}"
                        "pass a label name, an index or 'pred'")


def _in_range(index: int, labels, model) -> int:
    if labels is not None and index >= len(labels):
        raise InvalidTarget(f"--target {index} is out of range: {str(model)!r} has {len(labels)} classes "
                            f"(0..{len(labels) - 1}); pass an index in range, a label name or 'pred'")
    return index
