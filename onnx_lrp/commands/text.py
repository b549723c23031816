"""Text for the explain command: ``onnx-lrp MODEL "a sentence"`` (or ``--text-file FILE``).

A model that takes token ids is explained on a text: the tokenizer (``--tokenizer``, the model's
``onnx_lrp.tokenizer`` metadata, or ``tokenizer.json`` beside the model; see :mod:`onnx_lrp.text`)
makes its inputs, the relevance of each token is printed coloured (red for the target, blue
against it; numbers instead where colour is off), and ``NAME.tokens.html`` (the tokens highlighted,
with a colour bar) and ``NAME.json`` (tokens, ids, relevance per token, target) are written to
--out. ``--target-text`` explains a sentence encoder's similarity to another sentence.

Not a subcommand of its own (``cli.HELPERS``): the explain command adds these flags and hands a run
over when :func:`wanted` says its INPUT is text.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

from . import options
from .. import inputs, metadata, render
from ..cli import UsageError
from ..errors import InvalidInput
from ..graph import FLOAT_TYPES, INT_TYPES, ReadModel, explained_inputs
from ..text import TOKENIZER_KEY, TextError, TextModel, load_tokenizer, tokenizer_path

#: the composite for text when --composite is not given: transformers are explained with AttnLRP
TEXT_COMPOSITE = "attnlrp"
#: flags of the explain command that are about images and arrays, not text
NOT_FOR_TEXT = {"size": "--size", "layout": "--layout", "channels": "--channels", "scale": "--scale",
                "mean": "--mean", "std": "--std", "key": "--key", "keep_layers": "--keep-layers",
                "save_explainer": "--save-explainer", "html": "--html", "resume": "--resume"}
NAME_WORDS = 6


def add_arguments(parser) -> None:
    group = parser.add_argument_group("text (models that take token ids; INPUT is then the text)")
    group.add_argument("--tokenizer", metavar="DIR|FILE",
                       help="the HuggingFace tokenizer.json (or a directory holding it); default: the file the "
                            "model's onnx_lrp.tokenizer metadata names, else tokenizer.json beside the model")
    group.add_argument("--text-file", metavar="FILE", help="explain the text of this UTF-8 file (instead of INPUT)")
    group.add_argument("--target-text", metavar="TEXT",
                       help="sentence encoders: explain the similarity to this text (the dot product of the two "
                            "embeddings, the explained output of each)")


def wanted(args) -> bool:
    """Whether this run explains text: a text flag is given, or INPUT is no file and the model takes
    integers (or names a tokenizer). Raises a usage error when there is no INPUT at all."""
    if args.text_file is not None or args.tokenizer is not None or args.target_text is not None:
        return True
    if args.input is None:
        raise UsageError("missing INPUT: give a file, a directory, or a text (with --text-file FILE, a text file) "
                         "(see onnx-lrp --help)")
    path = Path(args.input)
    if path.exists() or path.suffix.lower() in inputs.SUFFIXES or not Path(args.model).is_file():
        return False
    proto = metadata.read_model_proto(args.model)
    props = {p.key: p.value for p in proto.metadata_props}
    return TOKENIZER_KEY in props or any(vi.type.tensor_type.elem_type in INT_TYPES for vi in proto.graph.input)


def run(args) -> int:
    text, name = _text(args)
    _refuse_image_flags(args)
    if args.target_text is not None and args.target.strip().lower() not in ("pred", "predicted"):
        raise UsageError("--target and --target-text both say what to explain; give one")
    if args.target_text is not None and not args.target_text.strip():
        raise TextError("--target-text is empty; give the sentence to compare with")
    model = ReadModel.read(args.model)
    meta = metadata.from_proto(model.proto, repr(args.model))
    token_input = explained_inputs(model.proto, repr(args.model), options.input_name(args))[0]
    if token_input.type.tensor_type.elem_type in FLOAT_TYPES:
        inputs_text = [vi.name for vi in model.proto.graph.input]
        raise TextError(f"{args.model!r} takes no token ids: its input {token_input.name!r} is floating point "
                        f"(inputs {inputs_text!r}); a text is explained on a model whose input is integer token ids "
                        "(e.g. input_ids); for arrays and images give INPUT as a file")
    path, why = tokenizer_path(args.model, meta.props, args.tokenizer)
    if path is None:
        raise TextError(f"no tokenizer for {args.model!r}: pass --tokenizer DIR|tokenizer.json, or name it in the "
                        "model's onnx_lrp.tokenizer metadata ({\"file\": \"NAME.tokenizer.json\"}, beside the model)")
    tokenizer = load_tokenizer(path)
    labels = metadata.read_labels_file(args.labels) if args.labels else meta.labels
    target = None if args.target_text is not None else options.resolve_target(args.target, labels, args.model)
    composite = TEXT_COMPOSITE if options.is_default(args.composite) else args.composite
    args.composite = composite
    kwargs = options.composite_kwargs(args, meta.preprocess)
    out = render.prepare_out_dir(args.out)

    from ..explainer import Explainer
    explainer = options.build(Explainer, model, composite=composite, providers=options.providers(args),
                              input_name=options.input_name(args), output_name=args.output_name, **kwargs)
    text_model = TextModel(explainer, tokenizer)
    result = text_model.explain(text, target=target, target_text=args.target_text, feeds=options.feeds(args))
    notes = list(result.explanation.notes)
    if why != "given":
        notes.append(f"tokenizer {str(path)!r} ({why})")
    if result.encoded.truncated:
        notes.append(f"the tokenizer cut the text to {len(result.encoded.ids)} tokens")
    if result.target["kind"] == "class" and args.target_text is None and result.explanation.output.ndim == 2 \
            and labels is None:
        notes.append("explaining one output dimension; for a sentence encoder --target-text TEXT explains the "
                     "similarity to another sentence")
    name = render.unique_name(name, set())
    files = {"tokens_html": str(out / f"{name}.tokens.html"), "summary": str(out / f"{name}.json")}
    doc = summarize(args, text, name, result, explainer, notes, files)
    _write_page(files["tokens_html"], args, doc, result)
    render.save_json(files["summary"], doc)
    _print(args, doc, result, notes)
    return 0


def summarize(args, text: str, name: str, result, explainer, notes: list, files: dict) -> dict:
    """``NAME.json``: the tokens, their ids and relevance (padding left out), and what was explained."""
    output = result.output
    total = result.relevance_sum
    return {"model": str(args.model), "composite": args.composite, "providers": list(explainer.providers),
            "name": name, "text": text, "input": explainer.input_name,
            "relevance_at": result.explanation.sources.get(explainer.input_name),
            "output_name": explainer.output_name, "tokens": result.tokens, "ids": result.ids,
            "relevance": [float(v) for v in result.relevance], "target": result.target, "output": output,
            "relevance_sum": total, "conservation": total / output if output else None,
            "padding_relevance": result.padding_relevance, "truncated": result.encoded.truncated,
            "notes": notes, "files": files}


def describe_target(doc: dict) -> str:
    """What was explained, in one line."""
    target = doc["target"]
    if target["kind"] == "text":
        cosine = "?" if target["cosine"] is None else f"{target['cosine']:.3f}"
        return (f"similarity to {_short(target['text'])!r}: dot product of the embeddings {target['dot']:.4g} "
                f"(cosine {cosine})")
    if target["kind"] == "weights":
        return f"the weighted output (Σ weights ⊙ output = {doc['output']:.4g})"
    label = target["label"]
    named = f"{label} (class {target['index']})" if label is not None else f"output {target['index']}"
    return f"{named}, value {doc['output']:.4g}"


# --- helpers ---------------------------------------------------------------------------------
def _text(args) -> tuple[str, str]:
    """The text and the NAME of its files: the file's stem, else the text's first words."""
    if args.text_file is not None:
        if args.input is not None:
            raise UsageError(f"give the text as INPUT or with --text-file, not both (INPUT is {args.input!r})")
        try:
            text = Path(args.text_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read --text-file {args.text_file!r} ({exc}); give a UTF-8 text file") from None
        text = text.strip()
        if not text:
            raise TextError(f"--text-file {args.text_file!r} holds no text")
        return text, Path(args.text_file).stem or "text"
    if args.input is None:
        raise UsageError("missing the text: give it as INPUT or with --text-file FILE")
    if Path(args.input).is_file():
        raise UsageError(f"INPUT {args.input!r} is a file; to explain the text it holds pass --text-file "
                         f"{args.input!r}")
    text = args.input.strip()
    if not text:
        raise TextError("the text is empty; give a sentence (or --text-file FILE)")
    words = re.findall(r"\w+", text.lower())[:NAME_WORDS]
    return text, "-".join(words)[:48].strip("-") or "text"


def _refuse_image_flags(args) -> None:
    given = [flag for dest, flag in NOT_FOR_TEXT.items() if getattr(args, dest, None) not in (None, False)]
    if given:
        raise UsageError(f"{given[0]} is for arrays and images, not text (a text writes NAME.tokens.html and "
                         "NAME.json to --out); leave it out")


def _write_page(path: str, args, doc: dict, result) -> None:
    from ..html import write_tokens_page

    facts = {"model": doc["model"], "text": doc["text"], "explained": describe_target(doc),
             "relevance sum": f"{doc['relevance_sum']:.4g}"
             + ("" if doc["conservation"] is None else f" ({doc['conservation']:.3g} × the explained value)"),
             "composite": doc["composite"], "relevance at": f"{doc['relevance_at']} (summed over its hidden axis)"}
    write_tokens_page(path, f"onnx-lrp: {Path(str(args.model)).name}", result.tokens, result.relevance, facts,
                      doc["notes"])


def _print(args, doc: dict, result, notes: list) -> None:
    if args.json:
        print(json.dumps(doc, indent=2, allow_nan=False))
        return
    if args.quiet:
        return
    from ..terminal import legend, tokens_text, use_colour

    colour = use_colour(sys.stdout)
    for note in notes:
        print(f"note: {note}")
    width = shutil.get_terminal_size((100, 24)).columns if colour else 100
    print(tokens_text(result.tokens, result.relevance, colour, width))
    print(legend(result.relevance, colour))
    ratio = "" if doc["conservation"] is None else f" ({doc['conservation']:.3g} × the explained value)"
    print(f"explained: {describe_target(doc)}; relevance sum {doc['relevance_sum']:.4g}{ratio}")
    print("wrote " + ", ".join(doc["files"].values()))


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
