"""``onnx-lrp inspect MODEL``: list each node, its op type, category and rule, and what is unsupported."""
from __future__ import annotations

import json

from . import options
from .. import inputs, metadata
from ..cli import UsageError
from ..graph import ReadModel
from ..inspection import inspect_model

HELP = "list every node with the rule the composite gives it, and what cannot be explained (nothing is explained)"
USAGE = "onnx-lrp inspect MODEL [--composite NAME] [--rule NODE=RULE] [--input-shape D,D,...] [--json]"
DESCRIPTION = ("Canonize MODEL as the explain command does and list each node of the result: its op type, its "
               "category, the LRP rule the composite gives it (with the same --low/--high, --rule and --op-rule "
               "as explain, so epsilon_gamma_box shows the bounds explain would use), and its status: ok, "
               "unsupported (with the reason), needs rule (a product whose signal cannot be told apart), no "
               "relevance (a gate or statistic the rules leave out), shape only (integer shape arithmetic). One "
               "forward run on random data reads the tensor shapes. Exit code 1 when some node needs a rule.")
EXAMPLES = """\
examples:
  onnx-lrp inspect models/text_direction.onnx
  onnx-lrp inspect model.onnx --composite epsilon_gamma_box --input-shape 3,224,224 --json
  onnx-lrp inspect model.onnx --rule 'Mul_3=Pass' --op-rule 'MaxPool=Norm'"""


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL", help="the ONNX model file")
    group = options.add_composite(parser)
    options.add_providers(group)
    parser.add_argument("--input-shape", metavar="D,D,...",
                        help="one sample's shape (or with the batch) where the model's input has symbolic "
                             "dimensions; default the onnx_lrp.preprocess size, else 32")
    out = parser.add_argument_group("output")
    options.add_json(out, "the listing")
    options.add_quiet(out)


def run(args) -> int:
    shape = _shape(args.input_shape) if args.input_shape else None
    model = ReadModel.read(args.model)  # read once: metadata here, the graph in inspect_model
    meta = metadata.from_proto(model.proto, repr(args.model))
    pre = inputs.resolve(meta.preprocess, inputs.ModelInput.from_proto(model.proto))
    kwargs = options.composite_kwargs(args, pre)
    listing = options.build(inspect_model, model, composite=args.composite, input_shape=shape,
                            providers=options.providers(args), **kwargs)
    if args.json:
        print(json.dumps(listing.to_dict(), indent=1))
    elif not args.quiet:
        print(listing.format())
    return 0 if listing.ok else 1


def _shape(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        dims = []
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(f"--input-shape {text!r} is not a list of positive integers such as 3,224,224")
    return dims
