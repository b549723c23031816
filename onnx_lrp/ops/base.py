"""The op handler interface.

A handler knows, for one family of ONNX ops, how to emit (as ONNX nodes) the op's forward pass
with substituted inputs and parameters, and its vector-Jacobian product (VJP). Rules are written
only against this interface, so they never branch on the op type. It also answers what the rest
of onnx-lrp asks about an op, so that nothing outside ``ops/`` needs a list of op types:

==========================  =====================================================================
``category_of``             the composite category (which rule a preset gives the node)
``data_input``              the one input that carries the explained data (the others are
                            parameters that must not depend on it), or None: every relevant input
``relevant_inputs``         the inputs relevance flows to, signal first
``signal``                  which relevant input Pass gives all relevance (a gate's signal)
``check``                   raise :class:`UnsupportedOp` for attributes it cannot handle
``params``/``weight_axes``  the weight and bias, and the weight's output / input channel axes
``sign``                    NONNEGATIVE output whatever the input, KEEPS_SIGN (non-negative when
                            the data is), or None; :meth:`nonnegative_output` decides per node
``linear``                  linear in its data input for fixed parameters (bias aside)
``forward``/``vjp``         the op on substituted inputs/parameters, and its gradient
==========================  =====================================================================

Handlers register with :func:`onnx_lrp.ops.registry.handles`; every module of this package is
imported when the first handler is looked up, so a new file is all a new op needs.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..builder import GraphBuilder
from ..errors import UnsupportedOp
from ..graph import ModelGraph

#: Categories a composite maps to rules.
CONV, DENSE, AFFINE, ACTIVATION, SUM, AVGPOOL, MAXPOOL, ROUTE, BATCHNORM, GATE, NORMALIZE, PASS = (
    "convolution", "dense", "affine", "activation", "sum", "avgpool", "maxpool", "route",
    "batchnorm", "gate", "normalize", "pass")
#: Attention: a product of two activations contracting an axis (Q Kᵀ, A V), and a Softmax inside the graph.
BILINEAR, SOFTMAX = "bilinear", "softmax"
#: A recurrent cell update: the sum of two gated terms, ``c = f⊙c' + i⊙g`` (GRU: ``(1−z)⊙n + z⊙h'``).
CELL = "cell"
#: A dense layer inside attention (the q, k, v and output projections); a composite that gives it
#: no rule gives it the dense rule (:data:`FALLBACK`).
ATTENTION_PROJECTION = "attention_projection"
CATEGORIES = (CONV, DENSE, AFFINE, ACTIVATION, SUM, AVGPOOL, MAXPOOL, ROUTE, BATCHNORM, GATE, NORMALIZE, PASS,
              BILINEAR, SOFTMAX, CELL, ATTENTION_PROJECTION)
#: Category -> the category whose rule it takes where a composite does not name it.
FALLBACK = {ATTENTION_PROJECTION: DENSE}

#: Sign behaviours (:attr:`Handler.sign`).
NONNEGATIVE, KEEPS_SIGN = "nonnegative", "keeps sign"


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def unsupported(node: onnx.NodeProto, why: str) -> UnsupportedOp:
    error = UnsupportedOp(
        f"node {node.name!r} (op type {node.op_type!r}): {why}. To proceed, name a rule for it: "
        f"onnx_lrp.Explainer(model, name_map={{{node.name!r}: onnx_lrp.rules.Pass()}}) passes its relevance "
        f"through unchanged (rules.Uniform() splits it equally over several inputs; type_map="
        f"{{{node.op_type!r}: ...}} covers every {node.op_type} node; on the command line: --rule "
        f"'{node.name}=Pass'), or re-export the model without it "
        "(`onnx-lrp inspect MODEL` lists every node that needs one)")
    error.reason = why  # the short form, for listings
    return error


class Handler:
    """Base class: a parameter-free op whose relevant inputs are those that depend on the data."""

    category = ROUTE
    #: the input position carrying the explained data when the op has one data input and
    #: parameters; None: every input that depends on the data is relevant
    data_input: int | None = None
    #: why a node is unsupported when a parameter input depends on the data (see :meth:`check_inputs`)
    data_dependent = "an input other than its data input (a parameter) depends on the explained data"
    #: NONNEGATIVE, KEEPS_SIGN or None (see :meth:`nonnegative_output`)
    sign: str | None = None
    #: linear in the data input for fixed parameters, bias aside (Conv, Gemm, pooling by averaging, moves)
    linear: bool = False
    #: True only for the stand-in handler of an unsupported op a user named a rule for
    stand_in: bool = False
    #: True for a gate on a state that carries no relevance (a recurrent cell's initial state):
    #: the rules that give a gate nothing (Pass) pass nothing at all, the state's share is absorbed
    absorbs: bool = False
    #: normalisations define ``detached_vjp(b, node, g, grad)``: the VJP with the statistic (σ) held
    #: constant, one gradient (or None) per relevant input, for the DetachStd rule; None elsewhere
    detached_vjp = None

    def category_of(self, node: onnx.NodeProto, g: ModelGraph) -> str:
        """The composite category of this node (some families depend on the operands)."""
        return self.category

    def check_inputs(self, node: onnx.NodeProto, g: ModelGraph) -> None:
        """With a :attr:`data_input`, only that input may depend on the explained data."""
        if self.data_input is not None and g.relevant_inputs(node) != [self.data_input]:
            raise unsupported(node, self.data_dependent)

    def check(self, node: onnx.NodeProto, g: ModelGraph) -> None:
        """Raise :class:`UnsupportedOp` when this node's attributes cannot be handled."""

    def validate(self, node: onnx.NodeProto, g: ModelGraph) -> None:
        """:meth:`check_inputs` then :meth:`check`: what the compiler calls before any rule runs."""
        self.check_inputs(node, g)
        self.check(node, g)

    def relevant_inputs(self, node: onnx.NodeProto, g: ModelGraph) -> list[int]:
        """Positions (in ``node.input``) of the inputs relevance flows to; the signal first."""
        return [self.data_input] if self.data_input is not None else g.relevant_inputs(node)

    def signal(self, node: onnx.NodeProto, g: ModelGraph) -> int | None:
        """Position, among :meth:`relevant_inputs`, of the *signal*: the input the Pass rule gives
        all relevance (the others, e.g. a gate or a statistic, are held constant). None when no
        input can be called the signal (Pass then refuses the node)."""
        return 0 if len(self.relevant_inputs(node, g)) == 1 else None

    def nonnegative_output(self, node: onnx.NodeProto, g: ModelGraph, nonnegative) -> bool:
        """Whether the output is provably >= 0; ``nonnegative(tensor)`` answers it for inputs.
        Used to skip the x⁻ terms of sign-splitting rules (an optimisation, never a change of result)."""
        if self.sign == NONNEGATIVE:
            return True
        if self.sign == KEEPS_SIGN:
            sources = [node.input[i] for i in self.relevant_inputs(node, g)]
            return bool(sources) and all(nonnegative(t) for t in sources)
        return False

    def params(self, node: onnx.NodeProto, g: ModelGraph) -> dict[str, np.ndarray] | None:
        """``{'weight': W, 'bias': b}`` for ops with parameters, else None."""
        return None

    #: position of the weight among ``node.input`` for ops with one (Conv: 1), else None
    weight_input: int | None = None
    #: position of the bias among ``node.input`` for ops that take one (Conv: 2), else None
    bias_input: int | None = None
    #: axis of the output holding the output channels of a weighted op (1: NCHW convolutions, -1: dense)
    output_channel_axis: int | None = None

    def weight_axes(self, node: onnx.NodeProto) -> tuple[int, int] | None:
        """(output-channel axis, input-channel axis) of the weight input (:attr:`weight_input`), from
        the node's attributes alone so that graph rewrites (which have no shapes) can ask too."""
        return None

    def out_channels(self, node: onnx.NodeProto, weight: np.ndarray) -> int | None:
        """Output channels of a weighted op given its weight; None without a single channel axis."""
        axes = self.weight_axes(node)
        return None if axes is None else int(weight.shape[axes[0]])

    def scale_output_channels(self, node: onnx.NodeProto, weight: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """The weight with output channel c multiplied by ``scale[c]`` (what folding a per-channel
        scale after the op into it needs)."""
        axis = self.weight_axes(node)[0]
        shape = [1] * weight.ndim
        shape[axis] = -1
        return weight * np.asarray(scale).reshape(shape)

    def forward(self, b: GraphBuilder, node: onnx.NodeProto, g: ModelGraph, inputs: list[str],
                params: dict | None) -> str:
        """Emit the op on ``inputs`` (replacing the relevant inputs, in order) and ``params``."""
        args = list(node.input)
        for idx, name in zip(self.relevant_inputs(node, g), inputs):
            args[idx] = name
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return b.op(node.op_type, args, hint=node.op_type.lower(), domain=node.domain or None, **attrs)

    def vjp(self, b: GraphBuilder, node: onnx.NodeProto, g: ModelGraph, grads: list[str | None],
            params: dict | None) -> list[str]:
        """Gradients at the relevant inputs given gradients at the outputs (None = zero)."""
        raise unsupported(node, "no gradient is implemented for this op")

    def forward_beside(self, b: GraphBuilder, node: onnx.NodeProto, g: ModelGraph, params: dict,
                       other: dict) -> str | None:
        """The op on its own input with ``other`` parameters, computed by the node of the model's
        forward pass itself (which then computes both, see :meth:`GraphBuilder.in_forward`); None
        where the handler cannot (the caller then emits :meth:`forward`)."""
        return None


def unbroadcast(b: GraphBuilder, grad: str, grad_shape: tuple, target_shape: tuple) -> str:
    """Sum ``grad`` over the axes along which ``target`` was broadcast to ``grad_shape``."""
    lead = len(grad_shape) - len(target_shape)
    if lead:
        grad = b.op("ReduceSum", [grad, b.ints(list(range(lead)))], keepdims=0)
        grad_shape = grad_shape[lead:]
    axes = [i for i, d in enumerate(target_shape) if d == 1 and grad_shape[i] != 1]
    if axes:
        grad = b.op("ReduceSum", [grad, b.ints(axes)], keepdims=1)
    return grad
