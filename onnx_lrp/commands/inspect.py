"""``onnx-lrp inspect MODEL``: list each node, its op type, category and rule, and what is unsupported."""
from __future__ import annotations

import json

from .. import composites
from ..inspect import inspect_model

HELP = "list every node with the rule the composite gives it, and what cannot be explained (nothing is explained)"
USAGE = "onnx-lrp inspect MODEL [--composite NAME] [--input-shape D,D,...] [--json]"
DESCRIPTION = ("Canonize MODEL as the explain command does and list each node of the result: its op type, its "
               "category, the LRP rule the composite gives it, and its status: ok, unsupported (with the reason), "
               "needs rule (a product whose signal cannot be told apart), no relevance (a gate or statistic the "
               "rules leave out), shape only (integer shape arithmetic). One forward run on random data reads "
               "the tensor shapes. Exit code 1 when some node needs a rule.")
EXAMPLES = """\
examples:
  onnx-lrp inspect models/text_direction.onnx
  onnx-lrp inspect model.onnx --composite epsilon_gamma_box --input-shape 3,224,224 --json"""


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL", help="the ONNX model file")
    parser.add_argument("--composite", default=composites.DEFAULT, choices=composites.names(), metavar="NAME",
                        help=f"LRP rules to use: {', '.join(composites.names())} (default %(default)s)")
    parser.add_argument("--input-shape", metavar="D,D,...",
                        help="one sample's shape (or with the batch) where the model's input has symbolic "
                             "dimensions; default the onnx_lrp.preprocess size, else 32")
    parser.add_argument("--json", action="store_true", help="print the listing as JSON")


def run(args) -> int:
    shape = _shape(args.input_shape) if args.input_shape else None
    listing = inspect_model(args.model, composite=args.composite, input_shape=shape)
    print(json.dumps(listing.to_dict(), indent=1) if args.json else listing.format())
    return 0 if listing.ok else 1


def _shape(text: str) -> list[int]:
    from ..cli import UsageError

    try:
        dims = [int(d) for d in text.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        dims = []
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(f"--input-shape {text!r} is not a list of positive integers such as 3,224,224")
    return dims
