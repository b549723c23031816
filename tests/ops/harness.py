"""Single-node harness for op handlers: forward and VJP checked against onnxruntime.

A test builds a one-node ONNX model with :func:`node_model` (data input ``x`` with a symbolic
batch, every other operand a constant initializer) and hands it to :func:`check_op`, which

1. builds the :class:`~onnx_lrp.graph.ModelGraph` exactly as the Explainer does
   (``Explainer(model).graph(sample_shape)``: canonization, probe at batch 1);
2. emits, with a fresh :class:`~onnx_lrp.builder.GraphBuilder`, the handler's ``forward`` on the
   node's relevant inputs and its ``vjp`` on gradient inputs ``grad<k>`` (one per output that
   the model exposes), and wraps them together with the model's own nodes (activation VJPs read
   the node's input and output tensors) into one model run by onnxruntime;
3. checks the forward against onnxruntime's run of the node itself, the VJP against central
   finite differences of the node's forward (a single-node model in float64 where onnxruntime
   implements the op for doubles, else a float64 numpy reference or float32 steps on
   piecewise-linear maps), the full Jacobian on small inputs (a VJP run whose batch holds one
   basis gradient per sample), batch 3 against three batch-1 runs, and, with ``modify``, the
   forward and VJP with changed parameters against a model built with those parameters.

Tolerances (float32 results; eps32 = 2**-23 ~ 1.2e-7 is float32's machine epsilon):

* forward: ``rtol=1e-5`` as required, with an absolute floor of 1e-6 × max|y| for outputs that
  cancel to near zero (a bias folded into ``beta·C`` rounds once more than the node does);
* VJP entry j against the exact ``(J^T g)_j``: a float32 sum of K products is off by at most
  about K·eps32·Σ|terms| (K ≤ ~100 here, so 1e-5 relative to Σ_i |J_ij g_i|), a derivative
  formula evaluated from the float32 output (``1 - y²`` at |y|→1) by a few eps32 of the largest
  entry (floor 1e-6 × max), plus the finite-difference error of J itself;
* finite differences: in float64 with step 1e-6 the truncation error (h²/6·|f'''|) and the
  rounding error (eps64·|f|/h ~ 1e-10) are far below the float32 tolerance; in float32 with step
  h (maps that are linear between kinks, kinks farther than h from the inputs) the quotient is
  exact up to rounding of f(u ± h e_j): 2·K·eps32·max|f| / (2h) per Jacobian entry.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_lrp import Explainer
from onnx_lrp.builder import GraphBuilder
from onnx_lrp.compile import all_names, forward_nodes
from onnx_lrp.executor import CPU, make_session
from onnx_lrp.ops.registry import handler_for

OPSET = 17
NODE = "under_test"
EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)
#: Relative error allowed for a float32 sum against Σ|terms| (see the module docstring).
SUM_RTOL = 1e-5
#: Absolute floor, relative to the largest entry, for derivatives rounded near cancellation.
FLOOR = 1e-6
#: Terms summed per output entry when bounding float32 rounding of a forward evaluation.
TERMS = 64
#: Largest per-sample input for which the full Jacobian is checked entry by entry.
FULL_JACOBIAN_MAX = 1024

_ONNX_TYPE = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
              np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(np.int64): TensorProto.INT64,
              np.dtype(np.bool_): TensorProto.BOOL}


def onnx_type(dtype) -> int:
    return _ONNX_TYPE[np.dtype(dtype)]


# --------------------------------------------------------------------------------------------
# building models
# --------------------------------------------------------------------------------------------

def node_model(op_type: str, sample_shape, inputs=("x",), *, n_outputs: int = 1, used_outputs=None,
               prefix=(), opset: int = OPSET, batch="N", out_dtype=np.float32, consts=None,
               **attrs) -> onnx.ModelProto:
    """A model whose last node, named :data:`NODE`, is ``op_type``.

    ``inputs`` holds tensor names (``"x"``, a prefix output, ``""`` for an omitted optional
    input) or arrays, which become initializers. ``prefix`` is a list of
    ``(op_type, inputs, output, attrs)`` nodes run before it (to feed it several activations).
    ``consts`` maps initializer names to replacement arrays (a model "built with those weights").
    The model's outputs are the node's outputs ``used_outputs`` (default all).
    """
    inits: list[onnx.TensorProto] = []
    consts = consts or {}

    def name_of(value):
        if isinstance(value, str):
            return value
        name = f"c{len(inits)}"
        value = np.asarray(value)
        inits.append(numpy_helper.from_array(np.asarray(consts.get(name, value), value.dtype), name))
        return name

    nodes = []
    for p_op, p_inputs, p_out, p_attrs in prefix:
        nodes.append(helper.make_node(p_op, [name_of(v) for v in p_inputs], [p_out], name=f"prefix{len(nodes)}",
                                      **p_attrs))
    outs = [f"y{k}" for k in range(n_outputs)]
    nodes.append(helper.make_node(op_type, [name_of(v) for v in inputs], outs, name=NODE, **attrs))
    used = list(range(n_outputs)) if used_outputs is None else list(used_outputs)
    graph = helper.make_graph(
        nodes, f"single_{op_type}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *sample_shape])],
        [helper.make_tensor_value_info(outs[k], onnx_type(out_dtype), None) for k in used],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    _give_outputs_shapes(model, batch, sample_shape)  # the checker wants a shape on every graph output
    onnx.checker.check_model(model)
    return model


def _give_outputs_shapes(model: onnx.ModelProto, batch, sample_shape) -> None:
    """Output shapes from onnxruntime at batch 1 (shape inference cannot read every constant);
    the output's first axis is named like the input's when it has the batch size."""
    untyped = onnx.ModelProto()
    untyped.CopyFrom(model)
    del untyped.graph.output[:]
    untyped.graph.output.extend(onnx.ValueInfoProto(name=o.name) for o in model.graph.output)
    first = batch if isinstance(batch, int) else 1
    x = np.zeros((first, *sample_shape), np.float32)
    values = session(untyped).run([o.name for o in model.graph.output], {"x": x})
    for out, value in zip(model.graph.output, values):
        dims = list(value.shape)
        if dims and not isinstance(batch, int) and dims[0] == 1:
            dims[0] = batch
        out.CopyFrom(helper.make_tensor_value_info(out.name, out.type.tensor_type.elem_type, dims))


def session(model: onnx.ModelProto):
    return make_session(model, [CPU], optimize=True, threads=1)


# --------------------------------------------------------------------------------------------
# one node under test
# --------------------------------------------------------------------------------------------

class Case:
    """The node :data:`NODE` of ``model`` as the compiler sees it, and graphs emitted from it."""

    def __init__(self, model: onnx.ModelProto, sample_shape):
        self.model = model
        self.sample_shape = tuple(sample_shape)
        # the Explainer owns the store of weights kept outside the protobuf: keep it alive
        self.explainer = Explainer(model, strip_squashers=False)  # the node under test may be a Sigmoid
        self.g = self.explainer.graph(self.sample_shape)
        self.node = self.g.nodes[NODE]
        self.handler = handler_for(self.node, self.g)
        self.handler.validate(self.node, self.g)
        self.rel = [self.node.input[i] for i in self.handler.relevant_inputs(self.node, self.g)]
        self.unique_rel = list(dict.fromkeys(self.rel))
        exposed = {o.name for o in model.graph.output}
        self.grad_out = [k for k, t in enumerate(self.node.output) if t in exposed]
        first = model.graph.input[0].type.tensor_type.shape.dim[0]
        self.fixed_batch = first.dim_value if first.HasField("dim_value") else None
        self._fd_sessions: dict = {}

    # --- shapes -----------------------------------------------------------------------
    def per_sample(self, tensor: str) -> tuple:
        shape = tuple(self.g.shape(tensor))
        return shape if self.fixed_batch else shape[1:]

    def out_dtype(self, k: int):
        return self.g.dtypes[self.node.output[k]]

    # --- emitted graph ----------------------------------------------------------------
    def emit(self, params, forward: bool = True, vjp: bool = True):
        """Session running the model, ``handler.forward`` (output ``fwd``) and ``handler.vjp``
        (outputs ``vjp<i>`` per relevant input) with ``params``; also outputs the node's relevant
        inputs ``in<i>`` (unique) and its exposed outputs ``out<k>``."""
        g, node = self.g, self.node
        b = GraphBuilder(all_names(g.model))
        produced: dict[str, str] = {}
        if forward:
            produced["fwd"] = self.handler.forward(b, node, g, list(self.rel), params)
        if vjp:
            grads = [f"grad{k}" if k in self.grad_out else None for k in range(len(node.output))]
            result = self.handler.vjp(b, node, g, grads, params)
            assert len(result) == len(self.rel), f"vjp returned {len(result)} gradients for {len(self.rel)} inputs"
            produced.update({f"vjp{i}": name for i, name in enumerate(result)})
        produced.update({f"in{i}": t for i, t in enumerate(self.unique_rel)})
        produced.update({f"aux{i}": t for i, t in enumerate(self.aux_inputs())})
        produced.update({f"out{k}": node.output[k] for k in self.grad_out})
        produced["node0"] = node.output[0]
        wrap = [helper.make_node("Identity", [src], [key], name=f"expose_{key}") for key, src in produced.items()]
        batch = self.fixed_batch or "N"
        x_shape = [batch, *self.g.shape(self.g.input_name)[1:]]
        inputs = [helper.make_tensor_value_info(self.g.input_name, TensorProto.FLOAT, x_shape)]
        if vjp:
            for k in self.grad_out:
                shape = [batch, *self.g.shape(node.output[k])[1:]] if not self.fixed_batch else \
                    list(self.g.shape(node.output[k]))
                inputs.append(helper.make_tensor_value_info(f"grad{k}", onnx_type(self.out_dtype(k)), shape))
        outputs = [onnx.ValueInfoProto(name=key) for key in produced]
        graph = helper.make_graph(forward_nodes(g, b) + b.nodes + wrap, "emitted", inputs, outputs,
                                  initializer=list(g.model.graph.initializer) + b.initializers)
        model = helper.make_model(graph, opset_imports=list(g.model.opset_import))
        model.ir_version = g.model.ir_version
        return Emitted(session(model), [o.name for o in outputs])

    def random_grads(self, rng, batch: int) -> dict[str, np.ndarray]:
        grads = {}
        for k in self.grad_out:
            shape = (batch, *self.per_sample(self.node.output[k])) if not self.fixed_batch else \
                self.g.shape(self.node.output[k])
            grads[f"grad{k}"] = rng.standard_normal(shape).astype(self.out_dtype(k))
        return grads

    # --- the node's own forward, for finite differences --------------------------------
    def aux_inputs(self) -> list[str]:
        """Inputs of the node that are neither relevant nor constant (e.g. a constant expanded to
        the batch through shape arithmetic): fixed values for the finite differences."""
        return [t for t in dict.fromkeys(self.node.input)
                if t and t not in self.unique_rel and self.g.const(t) is None]

    def node_function(self, dtype):
        """f(list of relevant input arrays) -> list of exposed outputs, by a one-node model whose
        float constants and float inputs/outputs are ``dtype`` (float64), or as in the model
        (float32). Inputs from :meth:`aux_inputs` take the values in ``self.aux_values``."""
        def as_dtype(elem_dtype):
            return dtype if dtype == np.float64 and np.issubdtype(elem_dtype, np.floating) else elem_dtype

        if dtype not in self._fd_sessions:
            node = onnx.NodeProto()
            node.CopyFrom(self.node)
            inits, inputs = [], []
            for t in self.unique_rel + self.aux_inputs():
                shape = ["B", *self.g.shape(t)[1:]] if not self.fixed_batch else list(self.g.shape(t))
                inputs.append(helper.make_tensor_value_info(t, onnx_type(as_dtype(self.g.dtypes[t])), shape))
            for t in dict.fromkeys(node.input):
                if not t or t in self.unique_rel or t in self.aux_inputs():
                    continue
                value = self.g.const(t)
                inits.append(numpy_helper.from_array(value.astype(as_dtype(value.dtype)), t))
            outputs = [helper.make_tensor_value_info(self.node.output[k], onnx_type(as_dtype(self.out_dtype(k))), None)
                       for k in self.grad_out]
            graph = helper.make_graph([node], "node_only", inputs, outputs, initializer=inits)
            model = helper.make_model(graph, opset_imports=list(self.g.model.opset_import))
            model.ir_version = self.g.model.ir_version
            self._fd_sessions[dtype] = session(model)
        sess = self._fd_sessions[dtype]

        def f(values):
            feeds = {t: np.asarray(v, as_dtype(self.g.dtypes[t])) for t, v in zip(self.unique_rel, values)}
            batch = np.asarray(values[0]).shape[0]
            for t in self.aux_inputs():
                value = self.aux_values[t]
                if not self.fixed_batch:
                    value = np.repeat(value, batch, axis=0)
                feeds[t] = value.astype(as_dtype(value.dtype))
            return [np.asarray(o, np.float64) for o in sess.run(None, feeds)]
        return f


@dataclass
class Emitted:
    sess: object
    names: list[str]

    def run(self, feeds) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.sess.run(self.names, feeds)))


# --------------------------------------------------------------------------------------------
# finite differences
# --------------------------------------------------------------------------------------------

@dataclass
class FiniteDifference:
    """How to evaluate the node's forward for finite differences.

    ``mode``: ``"f64"`` (onnxruntime in float64), ``"f32"`` (onnxruntime in float32; only for maps
    linear between kinks, with the kinks farther than ``step`` from the inputs) or ``"numpy"``
    (``ref``: float64 arrays of the relevant inputs -> array or tuple of arrays of the outputs).
    """

    mode: str = "f64"
    step: float | None = None
    ref: object = None

    def function(self, case: Case):
        if self.mode == "numpy":
            def f(values):
                out = self.ref(*[np.asarray(v, np.float64) for v in values])
                return [np.asarray(o, np.float64) for o in (out if isinstance(out, tuple) else (out,))]
            return f
        return case.node_function(np.float64 if self.mode == "f64" else np.float32)

    @property
    def dtype(self):
        return np.float32 if self.mode == "f32" else np.float64

    @property
    def h(self) -> float:
        return self.step if self.step is not None else (1e-6 if self.mode != "f32" else 1.0)

    def noise(self, f_scale: float, h_actual: np.ndarray) -> np.ndarray:
        """Bound on the rounding error of each difference quotient (per input direction)."""
        eps = EPS32 if self.mode == "f32" else EPS64
        return 2 * TERMS * eps * (f_scale + 1.0) / np.abs(h_actual)


F64 = FiniteDifference("f64")


def linear_f32(step: float = 1.0) -> FiniteDifference:
    """float32 differences for maps that are linear (or linear between kinks farther than step)."""
    return FiniteDifference("f32", step)


def numpy_ref(ref, step: float = 1e-6) -> FiniteDifference:
    return FiniteDifference("numpy", step, ref)


def _flatten(arrays) -> np.ndarray:
    return np.concatenate([np.asarray(a, np.float64).reshape(-1) for a in arrays])


def _unflatten(flat, shapes) -> list[np.ndarray]:
    out, pos = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        out.append(flat[..., pos:pos + size].reshape(flat.shape[:-1] + tuple(shape)))
        pos += size
    return out


def jacobian(case: Case, fd: FiniteDifference, sample: list[np.ndarray]):
    """Central-difference Jacobian (m outputs × n inputs, per sample) at ``sample`` (the node's
    relevant inputs, batch 1 or the fixed batch), and the error bound of each column."""
    f = fd.function(case)
    shapes = [np.asarray(a).shape for a in sample]
    u = _flatten(sample)
    n = u.size
    plus = np.repeat(u[None], n, 0) + fd.h * np.eye(n)
    minus = np.repeat(u[None], n, 0) - fd.h * np.eye(n)
    plus, minus = plus.astype(fd.dtype), minus.astype(fd.dtype)
    h_actual = (plus.astype(np.float64) - minus.astype(np.float64))[np.arange(n), np.arange(n)]
    if case.fixed_batch:
        rows_p = np.stack([_flatten(f(_unflatten(p, shapes))) for p in plus])
        rows_m = np.stack([_flatten(f(_unflatten(m, shapes))) for m in minus])
    else:
        rows_p = _stack_batch(f([v.reshape((n,) + s[1:]) for v, s in zip(_unflatten(plus, shapes), shapes)]), n)
        rows_m = _stack_batch(f([v.reshape((n,) + s[1:]) for v, s in zip(_unflatten(minus, shapes), shapes)]), n)
    J = ((rows_p - rows_m) / h_actual[:, None]).T
    scale = max(np.abs(rows_p).max(initial=0.0), np.abs(rows_m).max(initial=0.0))
    return J, fd.noise(scale, h_actual)


def _stack_batch(outputs, n) -> np.ndarray:
    return np.concatenate([o.reshape(n, -1) for o in outputs], axis=1)


def directional(case: Case, fd: FiniteDifference, sample, grads, v) -> tuple[float, float]:
    """d/dt <g, f(u + t v)> at t=0 by a central difference, and its rounding bound."""
    f = fd.function(case)
    shapes = [np.asarray(a).shape for a in sample]
    u = _flatten(sample)
    plus = (u + fd.h * v).astype(fd.dtype).astype(np.float64)
    minus = (u - fd.h * v).astype(fd.dtype).astype(np.float64)
    gflat = _flatten(grads)
    fp, fm = _flatten(f(_unflatten(plus, shapes))), _flatten(f(_unflatten(minus, shapes)))
    # the rounded inputs moved by (plus - minus), which is 2h·v only up to rounding: use it
    dt = 2 * fd.h
    actual = (plus - minus) / dt
    value = float(gflat @ (fp - fm)) / dt
    eps = EPS32 if fd.mode == "f32" else EPS64
    noise = 2 * TERMS * eps * float(np.abs(gflat) @ (np.abs(fp) + np.abs(fm) + 1.0)) / dt
    return value, noise, actual


# --------------------------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------------------------

def assert_forward_close(actual, expected, what: str):
    expected = np.asarray(expected, np.float64)
    floor = FLOOR * max(np.abs(expected).max(initial=0.0), 1e-30)
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=1e-5, atol=floor, err_msg=what)


def _vjp_flat(case: Case, result: dict, batch_index=None) -> np.ndarray:
    """The VJP results summed per unique relevant tensor, flattened per sample."""
    parts = []
    for t in case.unique_rel:
        total = sum(np.asarray(result[f"vjp{i}"], np.float64) for i, r in enumerate(case.rel) if r == t)
        parts.append(total if batch_index is None else total[batch_index:batch_index + 1])
    return _flatten(parts)


def assert_vjp_matches_jacobian(vjp: np.ndarray, J: np.ndarray, noise: np.ndarray, gflat: np.ndarray, what: str):
    """vjp ≈ J^T g within float32 summation error, floor and the finite-difference error."""
    exact = J.T @ gflat
    abs_terms = np.abs(J).T @ np.abs(gflat)
    tol = SUM_RTOL * abs_terms + FLOOR * abs_terms.max(initial=0.0) + noise * np.abs(gflat).sum()
    bad = np.abs(vjp - exact) > tol
    if bad.any():
        i = int(np.argmax(np.abs(vjp - exact) - tol))
        raise AssertionError(f"{what}: {int(bad.sum())}/{bad.size} entries differ; worst at {i}: vjp {vjp[i]!r}, "
                             f"finite differences {exact[i]!r}, tolerance {tol[i]:.3g}\n"
                             f"vjp  {np.array2string(vjp[:24], precision=5)}\n"
                             f"J^Tg {np.array2string(exact[:24], precision=5)}")
    return tol


def check_op(model: onnx.ModelProto, sample_shape, *, x=None, fd: FiniteDifference = F64, seed: int = 0,
             modify=None, ref_model: onnx.ModelProto | None = None, batch_check: bool = True,
             full_jacobian: bool = True) -> "Checked":
    """Run every check on the node :data:`NODE` of ``model``; returns what was computed."""
    rng = np.random.default_rng(seed)
    case = Case(model, sample_shape)
    params = case.handler.params(case.node, case.g)
    emitted = case.emit(params)
    nb = case.fixed_batch or 3
    if x is None:
        x = rng.standard_normal((nb, *sample_shape) if not case.fixed_batch else
                                tuple(case.g.shape(case.g.input_name))).astype(np.float32)
    x = np.asarray(x, np.float32)
    x1 = x if case.fixed_batch else x[:1]
    grads1 = case.random_grads(rng, 1)
    r1 = emitted.run({case.g.input_name: x1, **grads1})

    # (1) forward with the node's own parameters = the node as onnxruntime runs it
    assert_forward_close(r1["fwd"], r1["node0"], f"{case.node.op_type} forward")

    # (2) VJP against finite differences of the forward
    sample = [r1[f"in{i}"] for i in range(len(case.unique_rel))]
    case.aux_values = {t: r1[f"aux{i}"] for i, t in enumerate(case.aux_inputs())}
    gflat = _flatten([grads1[f"grad{k}"] for k in case.grad_out])
    vjp = _vjp_flat(case, r1)
    J, col_noise = jacobian(case, fd, sample)
    tol = assert_vjp_matches_jacobian(vjp, J, col_noise, gflat, f"{case.node.op_type} vjp(g) vs J^T g")
    v = rng.standard_normal(vjp.size)
    value, noise, actual = directional(case, fd, sample, [grads1[f"grad{k}"] for k in case.grad_out], v)
    predicted = float(vjp @ actual)
    bound = float(tol @ np.abs(actual)) + noise
    assert abs(predicted - value) <= bound, \
        f"{case.node.op_type}: <vjp(g), v> = {predicted!r} but d/dt <g, f(x + t v)> = {value!r} (bound {bound:.3g})"

    # (3) the whole Jacobian through the VJP: one basis gradient per sample
    if full_jacobian and not case.fixed_batch and J.size and J.shape[1] <= FULL_JACOBIAN_MAX:
        m = J.shape[0]
        basis = np.eye(m)
        feeds = {case.g.input_name: np.repeat(x1, m, axis=0)}
        pos = 0
        for k in case.grad_out:
            shape = case.per_sample(case.node.output[k])
            size = int(np.prod(shape, dtype=np.int64))
            feeds[f"grad{k}"] = basis[:, pos:pos + size].reshape((m, *shape)).astype(case.out_dtype(k))
            pos += size
        rows = emitted.run(feeds)
        J_vjp = np.stack([_vjp_flat(case, rows, i) for i in range(m)])
        tol = SUM_RTOL * np.abs(J) + FLOOR * np.abs(J).max(initial=0.0) + col_noise[None, :]
        bad = np.abs(J_vjp - J) > tol
        if bad.any():
            i, j = np.unravel_index(int(np.argmax(np.abs(J_vjp - J) - tol)), J.shape)
            raise AssertionError(f"{case.node.op_type}: Jacobian from the VJP differs from finite differences in "
                                 f"{int(bad.sum())}/{bad.size} entries; worst (out {i}, in {j}): vjp {J_vjp[i, j]!r}, "
                                 f"fd {J[i, j]!r}")

    # (4) batch 3 = three batch-1 runs
    if batch_check and not case.fixed_batch:
        grads3 = case.random_grads(rng, 3)
        r3 = emitted.run({case.g.input_name: x, **grads3})
        for i in range(3):
            ri = emitted.run({case.g.input_name: x[i:i + 1], **{k: v[i:i + 1] for k, v in grads3.items()}})
            for key, value in ri.items():
                assert r3[key].shape[0] == 3, f"{key}: batch 3 gave shape {r3[key].shape}"
                assert_forward_close(r3[key][i:i + 1], value, f"{case.node.op_type} {key}: sample {i} of batch 3")

    # (5) forward and VJP with modified parameters = a model built with them
    if modify is not None:
        assert params is not None, f"{case.node.op_type} has no parameters to modify"
        changed = modify({k: np.asarray(v, np.float64) for k, v in params.items()})
        changed = {k: np.asarray(v, np.float32) for k, v in changed.items()}
        mod_run = case.emit(changed).run({case.g.input_name: x1, **grads1})
        ref = Case(ref_model, sample_shape)
        ref.aux_values = case.aux_values
        ref_run = ref.emit(ref.handler.params(ref.node, ref.g), forward=False).run({ref.g.input_name: x1, **grads1})
        assert_forward_close(mod_run["fwd"], ref_run["node0"],
                             f"{case.node.op_type} forward with modified parameters")
        J_ref, noise_ref = jacobian(ref, fd, sample)
        assert_vjp_matches_jacobian(_vjp_flat(case, mod_run), J_ref, noise_ref, gflat,
                                    f"{case.node.op_type} vjp with modified parameters")
    return Checked(case, emitted, r1, J, x)


@dataclass
class Checked:
    case: Case
    emitted: Emitted
    result: dict
    J: np.ndarray
    x: np.ndarray


def away_from(values, kinks, margin: float = 0.05) -> np.ndarray:
    """Move entries of ``values`` closer than ``margin`` to any of ``kinks`` out to that margin."""
    values = np.array(values, np.float64)
    for k in kinks:
        near = np.abs(values - k) < margin
        values[near] = k + np.where(values[near] >= k, margin, -margin)
    return values.astype(np.float32)
