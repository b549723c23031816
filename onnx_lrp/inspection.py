"""What onnx-lrp will do with a model, node by node, before anything is explained.

:func:`inspect_model` canonizes the model as the :class:`~onnx_lrp.Explainer` does, reads the
shape of every tensor (one forward run on random data of the compiled input shape) and lists each
node of the canonized graph with its op type, the category its handler gives it, the rule the
composite assigns, and what is wrong where something is: an op no handler supports (with the
reason), a product whose signal cannot be told from its gate (Pass needs one), a node the
composite's rules leave without relevance (the gate branch of a squeeze-excitation block). The
``onnx-lrp inspect MODEL`` command (:mod:`onnx_lrp.commands.inspect`) prints the listing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import os

from .canonize.unroll_rnn import unrolled_from
from .compile import plan_nodes
from .errors import InvalidInput
from .explainer import Explainer
from .graph import ReadModel
from .rules import Pass

#: Size used for a symbolic (non-batch) input dimension that nothing else determines.
DEFAULT_DIM = 32


@dataclass
class NodeRow:
    """One node of the canonized graph."""

    index: int
    name: str
    op_type: str
    category: str | None
    rule: str | None
    status: str  # "ok", "unsupported", "needs rule", "no relevance", "shape only", "overridden"
    reason: str = ""


@dataclass
class Inspection:
    """The listing of one model under one composite at one input shape."""

    model: str
    composite: str
    input_name: str
    input_shape: tuple
    output_name: str
    rows: list[NodeRow]
    notes: list[str] = field(default_factory=list)
    #: one line per LSTM/GRU/RNN node: how its unrolled nodes are explained
    recurrent: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[NodeRow]:
        return [r for r in self.rows if r.status in ("unsupported", "needs rule")]

    @property
    def ok(self) -> bool:
        return not self.problems

    def override_hint(self) -> str:
        """The ``name_map`` that would let every problem node through, as Python source."""
        entries = ", ".join(f"{r.name!r}: onnx_lrp.rules.{'Uniform' if r.status == 'needs rule' else 'Pass'}()"
                            for r in self.problems)
        return f"name_map={{{entries}}}"

    def to_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "rows"},
                "input_shape": list(self.input_shape), "ok": self.ok,
                "nodes": [asdict(r) for r in self.rows]}

    def format(self) -> str:
        header = ["#", "node", "op", "category", "rule", "status"]
        table = [[str(r.index), r.name, r.op_type, r.category or "-", r.rule or "-",
                  r.status + (f": {r.reason}" if r.reason else "")] for r in self.rows]
        widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h)
                  for i, h in enumerate(header[:-1])]
        lines = [f"model {self.model}: input {self.input_name!r} {tuple(self.input_shape)}, explained output "
                 f"{self.output_name!r}, composite {self.composite}"]
        lines += [f"note: {n}" for n in self.notes]
        lines += self.recurrent
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  " + header[-1])
        for row in table:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
        counts = {}
        for r in self.rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        if self.problems:
            lines.append(f"{len(self.problems)} node(s) cannot be explained as they are; to proceed, pass e.g. "
                         f"onnx_lrp.Explainer(model, {self.override_hint()}) (rules.Pass: relevance passes "
                         "unchanged; rules.Uniform: split equally over the inputs), or re-export the model")
        return "\n".join(lines)


def inspect_model(model, composite="epsilon_plus_flat", input_shape=None, providers=None,
                  **composite_kwargs) -> Inspection:
    """List how every node of ``model`` will be explained under ``composite``.

    ``input_shape``: one sample's shape or the full shape with the batch; default the declared
    input shape, with symbolic dimensions taken from the ``onnx_lrp.preprocess`` metadata size or
    set to :data:`DEFAULT_DIM` (the rules do not depend on the size; the shapes read off the
    forward run do). ``epsilon_gamma_box`` without ``low``/``high`` takes the bounds the explain
    command would: pixels 0 and 255 through the model's ``onnx_lrp.preprocess`` metadata.
    """
    if composite == "epsilon_gamma_box" and not {"low", "high"} & set(composite_kwargs):
        if isinstance(model, (str, os.PathLike)):
            model = ReadModel.read(model)  # read once: bounds from its metadata, then the graph
        composite_kwargs = {**_default_bounds(model), **composite_kwargs}
    explainer = Explainer(model, composite=composite, providers=providers, **composite_kwargs)
    sample, notes = _sample_shape(explainer, input_shape)
    g = explainer.graph(sample)
    steps = {s.node.name: s for s in plan_nodes(g, explainer.composite, strict=False)}
    reached = _reached(g, steps)
    rows = []
    for index, node in enumerate(g.model.graph.node):
        step = steps.get(node.name)
        if step is None:
            rows.append(NodeRow(index, node.name, node.op_type, None, None, "shape only",
                                "computes no floating-point value from the input (shapes, indices)"))
            continue
        rows.append(_row(index, node, step, g, reached))
    notes = list(explainer.notes) + explainer._notes(g.sources) + notes
    name = composite if isinstance(composite, str) else type(explainer.composite).__name__
    return Inspection(explainer.label, name, explainer.input_name, (1, *sample), explainer.output_name, rows, notes,
                      _recurrent(g, rows))


_ROLES = {"linear": "linear maps", "gate": "gates", "cell": "cell updates", "activation": "activations"}


def _recurrent(g, rows) -> list[str]:
    """Per unrolled LSTM/GRU/RNN node: its roles with the categories and rules their nodes got."""
    groups: dict[str, dict] = {}
    for row, node in zip(rows, g.model.graph.node):
        info = unrolled_from(node)
        if info is None or info["role"] not in _ROLES or row.rule is None:
            continue
        entry = groups.setdefault(info["node"], {"info": info, "roles": {}})
        key = (info["role"], row.op_type, row.category, row.rule)
        entry["roles"][key] = entry["roles"].get(key, 0) + 1
    lines = []
    for name, entry in groups.items():
        info = entry["info"]
        lines.append(f"recurrent node: {info['op']} {name!r} ({info['direction']}), unrolled over {info['steps']} "
                     "steps; its nodes below are explained as")
        for role, title in _ROLES.items():
            parts = [f"{count} {op} ({category}) by {rule}"
                     for (r, op, category, rule), count in entry["roles"].items() if r == role]
            if parts:
                lines.append(f"  {title}: " + ", ".join(parts))
    return lines


def _row(index, node, step, g, reached) -> NodeRow:
    if step.problem is not None:
        return NodeRow(index, node.name, node.op_type, None, None, "unsupported",
                       getattr(step.problem, "reason", None) or str(step.problem))
    rule = repr(step.rule)
    inputs = step.handler.relevant_inputs(node, g)
    if isinstance(step.rule, Pass) and len(inputs) > 1:
        if step.handler.signal(node, g) is None:
            return NodeRow(index, node.name, node.op_type, step.category, rule, "needs rule",
                           f"a product of {len(inputs)} activations with no recognisable signal; Pass cannot "
                           "choose, name a rule (e.g. Uniform)")
    if node.name not in reached:
        return NodeRow(index, node.name, node.op_type, step.category, rule, "no relevance",
                       "feeds only gates or statistics, which the rules treat as constants")
    status = "overridden" if step.overridden else "ok"
    reason = "a rule named by the user stands in for an unsupported op" if step.handler.stand_in else ""
    return NodeRow(index, node.name, node.op_type, step.category, rule, status, reason)


def _reached(g, steps) -> set[str]:
    """Nodes that relevance reaches from the explained output, following which inputs each rule
    gives relevance to (Pass on a node with a signal: only the signal)."""
    carrying, reached = {g.output_name}, set()
    for node in reversed(g.topo_nodes()):
        step = steps.get(node.name)
        if step is None or not any(t in carrying for t in node.output):
            continue
        reached.add(node.name)
        if step.problem is not None:
            continue
        inputs = [node.input[i] for i in step.handler.relevant_inputs(node, g)]
        if isinstance(step.rule, Pass) and step.handler.absorbs:
            continue  # a gate on a state that carries no relevance: nothing passes
        if isinstance(step.rule, Pass) and len(inputs) > 1:
            position = step.handler.signal(node, g)
            inputs = inputs[position:position + 1] if position is not None else inputs
        carrying.update(inputs)
    return reached


def _sample_shape(explainer: Explainer, given) -> tuple[tuple, list[str]]:
    declared = list(explainer.input_shape)
    if given is not None:
        given = [int(d) for d in given]
        if len(given) == len(declared):
            given = given[1:]
        if len(given) != len(declared) - 1:
            raise InvalidInput(f"input shape {tuple(given)} does not match input {explainer.input_name!r} of rank "
                               f"{len(declared)} (declared {tuple(d if isinstance(d, int) and d > 0 else '?' for d in declared)})")
        return tuple(given), []
    sample = declared[1:]
    free = [i for i, d in enumerate(sample) if not (isinstance(d, int) and d > 0)]
    if not free:
        return tuple(sample), []
    size = _metadata_size(explainer)
    source = f"{DEFAULT_DIM} where unknown"
    if size is not None and len(sample) == 3:
        spatial = [1, 2] if sample[0] in (1, 3) or 0 not in free else [0, 1]
        for axis, value in zip(spatial, size):
            if axis in free:
                sample[axis] = value
        source = "the onnx_lrp.preprocess size"
    for i, d in enumerate(sample):
        if not (isinstance(d, int) and d > 0):
            sample[i] = DEFAULT_DIM
    note = (f"symbolic input dimensions set to {tuple(sample)} from {source} (pass input_shape / --input-shape "
            "to choose)")
    return tuple(int(d) for d in sample), [note]


def _default_bounds(model) -> dict:
    """ZBox bounds as the explain command derives them: pixels 0 and 255 through the preprocessing."""
    from . import inputs, metadata

    proto, label = (model.proto, model.label) if isinstance(model, ReadModel) else (model, "the model")
    pre = inputs.resolve(metadata.from_proto(proto).preprocess, inputs.ModelInput.from_proto(proto))
    return pre.box_bounds(label=label)


def _metadata_size(explainer: Explainer):
    try:
        from .metadata import from_proto
        return from_proto(explainer.source_model).preprocess.size
    except Exception:  # metadata is optional; a malformed entry is reported by the explain command
        return None


__all__ = ["inspect_model", "Inspection", "NodeRow", "DEFAULT_DIM"]

