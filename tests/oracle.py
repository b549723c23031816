"""Slow, independent float64 oracle for every LRP rule, in dense-Jacobian form.

A linear layer is written densely as ``A`` (out_features x in_features) and ``b`` (out_features),
so that ``z = A @ x + b`` for one sample with ``x`` flattened. Every rule is then an explicit
redistribution of the contributions ``z_ji = x_i * A_ji`` (or of a modified version of them),
computed with plain numpy in float64. Nothing here uses onnxruntime or onnx_lrp, so the library's
ONNX graphs can be checked against it.

The rule formulas follow Zennit 0.5.1 (``zennit/rules.py``) exactly, including which sums are
stabilised and what happens to the bias:

=============  ==============================================================================
rule           relevance at input i (``s(d) = R_j / stab(d_j)``, summed over outputs j)
=============  ==============================================================================
Epsilon        x_i A_ji s(A x + b)
ZPlus          (x⁺_i A⁺_ji + x⁻_i A⁻_ji) s(A⁺x⁺ + A⁻x⁻ + b⁺)
AlphaBeta      α (x⁺A⁺ + x⁻A⁻)_ji s(A⁺x⁺ + A⁻x⁻ + b⁺) − β (x⁺A⁻ + x⁻A⁺)_ji s(A⁻x⁺ + A⁺x⁻ + b⁻)
Gamma          z_j > 0: (x⁺(A+γA⁺) + x⁻(A+γA⁻))_ji s(Σ_i(...) + b + γb⁺);
               z_j < 0: (x⁺(A+γA⁻) + x⁻(A+γA⁺))_ji s(Σ_i(...) + b + γb⁻); z_j = 0: nothing
Flat           1_ji s(Σ_i 1_ji)            (ones over the receptive field, bias zeroed)
WSquare        A²_ji s(Σ_i A²_ji + b²)     (the bias is squared, not dropped)
ZBox           (x_i A_ji − l_i A⁺_ji − h_i A⁻_ji) s(Σ_i(...) + b − b⁺ − b⁻)   (bias cancels)
Norm           x_i A_ji s(A x)             (parameter-free Epsilon)
=============  ==============================================================================

with ``stab(z) = z + ε·sign(z)``, sign(0) = +1, ε = 1e-6 unless set.

Rule functions take one sample: ``x`` of any shape with ``x.size == A.shape[1]`` and ``R`` of any
shape with ``R.size == A.shape[0]``; they return the input relevance with ``x``'s shape.
:func:`batched` loops a rule over a batch.
"""

from __future__ import annotations

import itertools

import numpy as np

EPS = 1e-6


# --------------------------------------------------------------------------------------------
# stabiliser and sign helpers
# --------------------------------------------------------------------------------------------

def sign0(z):
    """Sign with sign(0) = +1, as Zennit's ``stabilize``."""
    z = np.asarray(z, dtype=np.float64)
    return np.where(z >= 0.0, 1.0, -1.0)


def stab(z, eps=EPS):
    """Zennit's default stabiliser: ``z + eps * sign(z)`` with sign(0) = +1."""
    z = np.asarray(z, dtype=np.float64)
    return z + eps * sign0(z)


def pos(a):
    """Positive part ``max(a, 0)`` in float64."""
    return np.maximum(np.asarray(a, dtype=np.float64), 0.0)


def neg(a):
    """Negative part ``min(a, 0)`` in float64."""
    return np.minimum(np.asarray(a, dtype=np.float64), 0.0)


# --------------------------------------------------------------------------------------------
# attribute defaults shared by conv / pool helpers (ONNX conventions)
# --------------------------------------------------------------------------------------------

def _conv_attrs(nd, strides, pads, dilations):
    """Fill ONNX defaults: strides/dilations of ones, pads ``[begin..., end...]`` of zeros."""
    strides = tuple(int(s) for s in (strides if strides is not None else [1] * nd))
    dilations = tuple(int(d) for d in (dilations if dilations is not None else [1] * nd))
    pads = tuple(int(p) for p in (pads if pads is not None else [0] * (2 * nd)))
    if len(strides) != nd or len(dilations) != nd or len(pads) != 2 * nd:
        raise ValueError(
            f"expected {nd} strides/dilations and {2 * nd} pads, got "
            f"strides={strides!r}, dilations={dilations!r}, pads={pads!r}"
        )
    return strides, pads[:nd], pads[nd:], dilations


def conv_output_spatial(in_spatial, kernel, strides, pads_begin, pads_end, dilations):
    """Output spatial size of a Conv/pool (floor mode)."""
    return tuple(
        (n + pb + pe - d * (k - 1) - 1) // s + 1
        for n, k, s, pb, pe, d in zip(in_spatial, kernel, strides, pads_begin, pads_end, dilations)
    )


def conv_transpose_output_spatial(in_spatial, kernel, strides, pads_begin, pads_end, dilations,
                                  output_padding):
    """Output spatial size of a ConvTranspose given explicit pads (ONNX formula)."""
    return tuple(
        s * (n - 1) + op + (k - 1) * d + 1 - pb - pe
        for n, k, s, pb, pe, d, op in zip(
            in_spatial, kernel, strides, pads_begin, pads_end, dilations, output_padding
        )
    )


def _ravel(index, shape):
    return int(np.ravel_multi_index(tuple(index), tuple(shape)))


def _inside(index, shape):
    return all(0 <= i < n for i, n in zip(index, shape))


# --------------------------------------------------------------------------------------------
# reference forwards (batched, float64)
# --------------------------------------------------------------------------------------------

def conv_nd(x, W, b=None, strides=None, pads=None, dilations=None, groups=1):
    """Reference N-D convolution (ONNX Conv semantics, cross-correlation).

    Parameters
    ----------
    x : array (N, C, *spatial)
    W : array (M, C / groups, *kernel)
    b : array (M,) or None
    strides, pads, dilations : ONNX attributes; pads are ``[begin..., end...]``
    groups : int

    Returns
    -------
    array (N, M, *out_spatial), float64
    """
    x = np.asarray(x, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    nd = x.ndim - 2
    strides, pb, pe, dil = _conv_attrs(nd, strides, pads, dilations)
    n_batch, c_in = x.shape[:2]
    m_out, c_group = W.shape[:2]
    kernel = W.shape[2:]
    if c_in != c_group * groups or m_out % groups:
        raise ValueError(f"channels do not fit groups={groups}: x {x.shape}, W {W.shape}")
    m_group = m_out // groups
    xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(pb, pe)))
    out_sp = conv_output_spatial(x.shape[2:], kernel, strides, pb, pe, dil)
    y = np.zeros((n_batch, m_out) + out_sp)
    for g in range(groups):
        xg = xp[:, g * c_group:(g + 1) * c_group]
        wg = W[g * m_group:(g + 1) * m_group]
        for off in np.ndindex(*kernel):
            window = tuple(
                slice(o * d, o * d + s * (n - 1) + 1, s)
                for o, d, s, n in zip(off, dil, strides, out_sp)
            )
            patch = xg[(slice(None), slice(None)) + window]
            tap = wg[(slice(None), slice(None)) + off]
            y[:, g * m_group:(g + 1) * m_group] += np.einsum("nc...,mc->nm...", patch, tap)
    if b is not None:
        y += np.asarray(b, dtype=np.float64).reshape((1, m_out) + (1,) * nd)
    return y


def conv_transpose_nd(x, W, b=None, strides=None, pads=None, dilations=None, groups=1,
                      output_padding=None):
    """Reference N-D transposed convolution (ONNX ConvTranspose with explicit pads).

    Every input element scatters ``x[c, i] * W[c, m, k]`` to output position
    ``i * stride - pad_begin + k * dilation``.

    Parameters
    ----------
    x : array (N, C, *spatial)
    W : array (C, M / groups, *kernel)
    b : array (M,) or None
    output_padding : extra size added at the end of each spatial axis (default 0)

    Returns
    -------
    array (N, M, *out_spatial), float64
    """
    x = np.asarray(x, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    nd = x.ndim - 2
    strides, pb, pe, dil = _conv_attrs(nd, strides, pads, dilations)
    out_pad = tuple(output_padding) if output_padding is not None else (0,) * nd
    n_batch, c_in = x.shape[:2]
    kernel = W.shape[2:]
    c_group, m_group = c_in // groups, W.shape[1]
    if W.shape[0] != c_in or c_in % groups:
        raise ValueError(f"channels do not fit groups={groups}: x {x.shape}, W {W.shape}")
    full = tuple(
        s * (n - 1) + op + (k - 1) * d + 1
        for n, k, s, d, op in zip(x.shape[2:], kernel, strides, dil, out_pad)
    )
    y = np.zeros((n_batch, m_group * groups) + full)
    for g in range(groups):
        xg = x[:, g * c_group:(g + 1) * c_group]
        wg = W[g * c_group:(g + 1) * c_group]
        for off in np.ndindex(*kernel):
            window = tuple(
                slice(o * d, o * d + s * (n - 1) + 1, s)
                for o, d, s, n in zip(off, dil, strides, x.shape[2:])
            )
            tap = wg[(slice(None), slice(None)) + off]
            y[(slice(None), slice(g * m_group, (g + 1) * m_group)) + window] += np.einsum(
                "nc...,cm->nm...", xg, tap
            )
    crop = tuple(slice(b0, n - e0) for b0, e0, n in zip(pb, pe, full))
    y = y[(slice(None), slice(None)) + crop]
    if b is not None:
        y = y + np.asarray(b, dtype=np.float64).reshape((1, -1) + (1,) * nd)
    return y


def _pool_windows(in_spatial, kernel, strides, pb, pe, dil):
    """Yield (output index, list of in-bounds input indices) for every pooling window."""
    out_sp = conv_output_spatial(in_spatial, kernel, strides, pb, pe, dil)
    for o in np.ndindex(*out_sp):
        members = []
        for off in np.ndindex(*kernel):
            idx = tuple(oi * s - p + k * d for oi, s, p, k, d in zip(o, strides, pb, off, dil))
            if _inside(idx, in_spatial):
                members.append(idx)
        yield o, members


def avg_pool(x, kernel_shape, strides=None, pads=None, count_include_pad=False):
    """Naive ONNX AveragePool (floor mode, no dilation).

    With ``count_include_pad`` the divisor is the full kernel size, else the number of
    in-bounds elements of the window.
    """
    x = np.asarray(x, dtype=np.float64)
    nd = x.ndim - 2
    strides = strides if strides is not None else kernel_shape
    strides, pb, pe, dil = _conv_attrs(nd, strides, pads, None)
    out_sp = conv_output_spatial(x.shape[2:], kernel_shape, strides, pb, pe, dil)
    y = np.zeros(x.shape[:2] + out_sp)
    for o, members in _pool_windows(x.shape[2:], kernel_shape, strides, pb, pe, dil):
        total = sum(x[(slice(None), slice(None)) + idx] for idx in members)
        divisor = int(np.prod(kernel_shape)) if count_include_pad else len(members)
        y[(slice(None), slice(None)) + o] = total / divisor
    return y


def max_pool(x, kernel_shape, strides=None, pads=None, dilations=None):
    """Naive ONNX MaxPool (floor mode); padded positions never win."""
    x = np.asarray(x, dtype=np.float64)
    nd = x.ndim - 2
    strides = strides if strides is not None else [1] * nd
    strides, pb, pe, dil = _conv_attrs(nd, strides, pads, dilations)
    out_sp = conv_output_spatial(x.shape[2:], kernel_shape, strides, pb, pe, dil)
    y = np.full(x.shape[:2] + out_sp, -np.inf)
    for o, members in _pool_windows(x.shape[2:], kernel_shape, strides, pb, pe, dil):
        for idx in members:
            y[(slice(None), slice(None)) + o] = np.maximum(
                y[(slice(None), slice(None)) + o], x[(slice(None), slice(None)) + idx]
            )
    return y


def max_pool_wta(x, R, kernel_shape, strides=None, pads=None, dilations=None):
    """Winner-takes-all relevance routing through MaxPool.

    Each output's relevance goes to the first maximal element of its window, scanning the
    window in row-major kernel order (the element onnxruntime's MaxPool ``Indices`` names);
    overlapping windows add up.

    Parameters
    ----------
    x : array (N, C, *spatial)
    R : array (N, C, *out_spatial)

    Returns
    -------
    array like ``x``
    """
    x = np.asarray(x, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    nd = x.ndim - 2
    strides = strides if strides is not None else [1] * nd
    strides, pb, pe, dil = _conv_attrs(nd, strides, pads, dilations)
    out = np.zeros_like(x)
    for o, members in _pool_windows(x.shape[2:], kernel_shape, strides, pb, pe, dil):
        for n, c in np.ndindex(*x.shape[:2]):
            values = [x[(n, c) + idx] for idx in members]
            winner = members[int(np.argmax(values))]
            out[(n, c) + winner] += R[(n, c) + o]
    return out


# --------------------------------------------------------------------------------------------
# dense (A, b) builders, by explicit index loops (independent of the forwards above)
# --------------------------------------------------------------------------------------------

def conv_to_dense(W, b, in_shape, strides=None, pads=None, dilations=None, groups=1):
    """Dense matrix of an N-D Conv for one sample.

    Parameters
    ----------
    W : array (M, C / groups, *kernel)
    b : array (M,) or None
    in_shape : (C, *spatial), one sample

    Returns
    -------
    A : array (M * prod(out_spatial), C * prod(spatial))
    b_dense : array (M * prod(out_spatial),)
    out_shape : (M, *out_spatial)
    """
    W = np.asarray(W, dtype=np.float64)
    c_in, in_sp = int(in_shape[0]), tuple(int(n) for n in in_shape[1:])
    nd = len(in_sp)
    strides, pb, pe, dil = _conv_attrs(nd, strides, pads, dilations)
    m_out, c_group = W.shape[:2]
    kernel = W.shape[2:]
    m_group = m_out // groups
    out_sp = conv_output_spatial(in_sp, kernel, strides, pb, pe, dil)
    n_out, n_in = int(np.prod(out_sp)), int(np.prod(in_sp))
    A = np.zeros((m_out * n_out, c_in * n_in))
    for g, o, k in itertools.product(range(groups), np.ndindex(*out_sp), np.ndindex(*kernel)):
        i = tuple(oi * s - p + ki * d for oi, s, p, ki, d in zip(o, strides, pb, k, dil))
        if not _inside(i, in_sp):
            continue  # a padded position: it does not exist in x
        ms = np.arange(g * m_group, (g + 1) * m_group)
        cs = np.arange(g * c_group, (g + 1) * c_group)
        rows = ms * n_out + _ravel(o, out_sp)
        cols = cs * n_in + _ravel(i, in_sp)
        A[np.ix_(rows, cols)] += W[(ms[:, None], np.arange(c_group)[None, :]) + k]
    return A, _bias_per_position(b, m_out, n_out), (m_out,) + out_sp


def conv_transpose_to_dense(W, b, in_shape, strides=None, pads=None, dilations=None, groups=1,
                            output_padding=None):
    """Dense matrix of an N-D ConvTranspose (explicit pads) for one sample.

    Parameters
    ----------
    W : array (C, M / groups, *kernel)
    in_shape : (C, *spatial)

    Returns
    -------
    A, b_dense, out_shape as :func:`conv_to_dense`
    """
    W = np.asarray(W, dtype=np.float64)
    c_in, in_sp = int(in_shape[0]), tuple(int(n) for n in in_shape[1:])
    nd = len(in_sp)
    strides, pb, pe, dil = _conv_attrs(nd, strides, pads, dilations)
    out_pad = tuple(output_padding) if output_padding is not None else (0,) * nd
    c_group, m_group = c_in // groups, W.shape[1]
    kernel = W.shape[2:]
    out_sp = conv_transpose_output_spatial(in_sp, kernel, strides, pb, pe, dil, out_pad)
    m_out = m_group * groups
    n_out, n_in = int(np.prod(out_sp)), int(np.prod(in_sp))
    A = np.zeros((m_out * n_out, c_in * n_in))
    for g, i, k in itertools.product(range(groups), np.ndindex(*in_sp), np.ndindex(*kernel)):
        o = tuple(ii * s - p + ki * d for ii, s, p, ki, d in zip(i, strides, pb, k, dil))
        if not _inside(o, out_sp):
            continue  # cropped by pads
        cs = np.arange(g * c_group, (g + 1) * c_group)
        ms = np.arange(g * m_group, (g + 1) * m_group)
        rows = ms * n_out + _ravel(o, out_sp)
        cols = cs * n_in + _ravel(i, in_sp)
        A[np.ix_(rows, cols)] += W[(cs[None, :], np.arange(m_group)[:, None]) + k]
    return A, _bias_per_position(b, m_out, n_out), (m_out,) + out_sp


def _bias_per_position(b, channels, positions):
    if b is None:
        return np.zeros(channels * positions)
    return np.repeat(np.asarray(b, dtype=np.float64).reshape(channels), positions)


def gemm_to_dense(B, C=None, alpha=1.0, beta=1.0, transB=0):
    """Dense form of ONNX Gemm ``Y = alpha * x @ B' + beta * C`` for one row ``x``.

    ``B'`` is ``B`` (shape (K, N)) or, with ``transB=1``, ``B.T`` (B of shape (N, K)).
    ``C`` may be a scalar, (N,) or (1, N). The effective weight ``alpha * B'.T`` is returned as
    ``A``, i.e. rules that modify weights (W⁺, W², ...) act on ``alpha`` times the weight.

    Returns
    -------
    A : array (N, K)
    b : array (N,)
    """
    B = np.asarray(B, dtype=np.float64)
    A = alpha * (B if transB else B.T)
    if C is None:
        return A, np.zeros(A.shape[0])
    C = np.asarray(C, dtype=np.float64)
    if C.size not in (1, A.shape[0]):
        raise ValueError(f"Gemm bias C of shape {C.shape} is not per output (N={A.shape[0]})")
    return A, beta * np.broadcast_to(C.reshape(-1), (A.shape[0],)).copy()


def matmul_to_dense(B):
    """Dense form of ``x @ B`` with constant B (K, N) for one row ``x``: ``(B.T, 0)``."""
    B = np.asarray(B, dtype=np.float64)
    return B.T.copy(), np.zeros(B.shape[1])


def affine_channel_to_dense(scale, shift, in_shape):
    """Dense form of a per-channel affine map ``y[c] = scale[c] * x[c] + shift[c]``.

    ``in_shape`` is ``(C, *spatial)``; this is an unfolded BatchNormalization with
    ``scale = gamma / sqrt(var + eps)`` and ``shift = beta - mean * scale``.
    """
    channels, positions = int(in_shape[0]), int(np.prod(in_shape[1:]))
    diag = np.repeat(np.asarray(scale, dtype=np.float64).reshape(channels), positions)
    return np.diag(diag), _bias_per_position(shift, channels, positions)


def avg_pool_to_dense(in_shape, kernel_shape, strides=None, pads=None, count_include_pad=False):
    """Dense matrix of an AveragePool for one sample ``(C, *spatial)``; no bias.

    Returns
    -------
    A : array (C * prod(out_spatial), C * prod(spatial))
    out_shape : (C, *out_spatial)
    """
    channels, in_sp = int(in_shape[0]), tuple(int(n) for n in in_shape[1:])
    nd = len(in_sp)
    strides = strides if strides is not None else kernel_shape
    strides, pb, pe, dil = _conv_attrs(nd, strides, pads, None)
    out_sp = conv_output_spatial(in_sp, kernel_shape, strides, pb, pe, dil)
    n_out, n_in = int(np.prod(out_sp)), int(np.prod(in_sp))
    A = np.zeros((channels * n_out, channels * n_in))
    for o, members in _pool_windows(in_sp, kernel_shape, strides, pb, pe, dil):
        divisor = int(np.prod(kernel_shape)) if count_include_pad else len(members)
        for c in range(channels):
            for idx in members:
                A[c * n_out + _ravel(o, out_sp), c * n_in + _ravel(idx, in_sp)] += 1.0 / divisor
    return A, (channels,) + out_sp


def global_avg_pool_to_dense(in_shape):
    """Dense matrix of GlobalAveragePool for one sample ``(C, *spatial)``: (C, C * prod)."""
    channels, positions = int(in_shape[0]), int(np.prod(in_shape[1:]))
    return np.kron(np.eye(channels), np.full((1, positions), 1.0 / positions))


def reduce_sum_to_dense(in_shape, axis):
    """Dense matrix that sums a one-sample tensor of ``in_shape`` over ``axis`` (keepdims=0)."""
    n_in = int(np.prod(in_shape))
    index = np.arange(n_in).reshape(in_shape)
    out = np.moveaxis(index, axis, -1).reshape(-1, in_shape[axis])
    A = np.zeros((out.shape[0], n_in))
    for row, cols in enumerate(out):
        A[row, cols] = 1.0
    return A


def add_to_dense(size, n_inputs=2):
    """Dense matrix of an n-ary Add of same-shape tensors, input = their concatenation."""
    return np.hstack([np.eye(size)] * n_inputs)


# --------------------------------------------------------------------------------------------
# LRP rules (one sample, dense-Jacobian form)
# --------------------------------------------------------------------------------------------

def _prepare(x, A, b, R):
    """Flatten and cast to float64; check that the sizes fit ``A``."""
    x = np.asarray(x, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64).reshape(-1)
    b = np.zeros(A.shape[0]) if b is None else np.asarray(b, dtype=np.float64).reshape(-1)
    if A.ndim != 2 or x.size != A.shape[1] or R.size != A.shape[0] or b.size != A.shape[0]:
        raise ValueError(
            f"sizes do not fit: x {x.shape}, A {A.shape}, b {b.shape}, R {R.shape}; "
            "expected x.size == A.shape[1] and R.size == b.size == A.shape[0]"
        )
    return x.reshape(-1), A, b, R, x.shape


def redistribute(contrib, denom, R, eps=EPS):
    """Relevance ``Σ_j contrib_ji * R_j / stab(denom_j)`` for every input i."""
    return (contrib * (R / stab(denom, eps))[:, None]).sum(axis=0)


def contributions(x, A):
    """Matrix of contributions ``z_ji = x_i * A_ji`` (out x in)."""
    return np.asarray(A, dtype=np.float64) * np.asarray(x, dtype=np.float64).reshape(1, -1)


def epsilon(x, A, b, R, eps=EPS):
    """LRP-ε (Bach et al. 2015): ``R_i = Σ_j x_i A_ji R_j / stab(z_j)``, z = A x + b."""
    x, A, b, R, shape = _prepare(x, A, b, R)
    Z = contributions(x, A)
    return redistribute(Z, Z.sum(axis=1) + b, R, eps).reshape(shape)


def _positive_part(x, A, b):
    """Zennit's ZPlus numerator (x⁺A⁺ + x⁻A⁻) and denominator (with b⁺, no bias for x⁻)."""
    Z = contributions(pos(x), pos(A)) + contributions(neg(x), neg(A))
    return Z, Z.sum(axis=1) + pos(b)


def _negative_part(x, A, b):
    """Zennit's AlphaBeta negative numerator (x⁺A⁻ + x⁻A⁺) and denominator (with b⁻)."""
    Z = contributions(pos(x), neg(A)) + contributions(neg(x), pos(A))
    return Z, Z.sum(axis=1) + neg(b)


def zplus(x, A, b, R, eps=EPS):
    """LRP-z⁺ as Zennit's ZPlus (= AlphaBeta α=1, β=0, negative inputs allowed).

    ``R_i = Σ_j (x⁺_i A⁺_ji + x⁻_i A⁻_ji) R_j / stab(Σ_i(x⁺A⁺ + x⁻A⁻)_ji + b⁺_j)``.
    One stabiliser on the summed positive-contribution denominator.
    """
    x, A, b, R, shape = _prepare(x, A, b, R)
    Z, denom = _positive_part(x, A, b)
    return redistribute(Z, denom, R, eps).reshape(shape)


def alpha_beta(x, A, b, R, alpha=2.0, beta=1.0, eps=EPS):
    """LRP-αβ (Bach et al. 2015) as Zennit's AlphaBeta.

    ``α·(x⁺A⁺ + x⁻A⁻)/stab(Σ + b⁺) − β·(x⁺A⁻ + x⁻A⁺)/stab(Σ + b⁻)``, each times R_j.
    Like Zennit, requires α, β ≥ 0 and α − β = 1.
    """
    if alpha < 0 or beta < 0 or alpha - beta != 1.0:
        raise ValueError(f"AlphaBeta needs alpha, beta >= 0 and alpha - beta == 1, got {alpha}, {beta}")
    x, A, b, R, shape = _prepare(x, A, b, R)
    Zp, dp = _positive_part(x, A, b)
    Zn, dn = _negative_part(x, A, b)
    out = alpha * redistribute(Zp, dp, R, eps) - beta * redistribute(Zn, dn, R, eps)
    return out.reshape(shape)


def gamma(x, A, b, R, gamma=0.25, eps=EPS):
    """Generalised LRP-γ (Montavon et al. 2019; Andéol et al. 2021) as Zennit 0.5.1's Gamma.

    Zennit evaluates five forwards: (x⁺; W+γW⁺, b+γb⁺), (x⁻; W+γW⁻, 0), (x⁺; W+γW⁻, b+γb⁻),
    (x⁻; W+γW⁺, 0) and the plain (x; W, b). Outputs with z_j > 0 redistribute with the first
    pair, outputs with z_j < 0 with the second pair, outputs with z_j = 0 give nothing:

    - z_j > 0: ``c_ji = x⁺_i (A + γA⁺)_ji + x⁻_i (A + γA⁻)_ji``, ``d_j = Σ_i c_ji + b_j + γ b⁺_j``
    - z_j < 0: ``c_ji = x⁺_i (A + γA⁻)_ji + x⁻_i (A + γA⁺)_ji``, ``d_j = Σ_i c_ji + b_j + γ b⁻_j``

    ``R_i = Σ_j c_ji R_j / stab(d_j)``. Note ``A + γA⁺`` is the full weight plus γ times its
    positive part (not ``A⁺ + γA⁺``).
    """
    x, A, b, R, shape = _prepare(x, A, b, R)
    w_up, w_down = A + gamma * pos(A), A + gamma * neg(A)
    z = A @ x + b
    c_pos = contributions(pos(x), w_up) + contributions(neg(x), w_down)
    c_neg = contributions(pos(x), w_down) + contributions(neg(x), w_up)
    d_pos = c_pos.sum(axis=1) + b + gamma * pos(b)
    d_neg = c_neg.sum(axis=1) + b + gamma * neg(b)
    out = (redistribute(c_pos, d_pos, np.where(z > 0, R, 0.0), eps)
           + redistribute(c_neg, d_neg, np.where(z < 0, R, 0.0), eps))
    return out.reshape(shape)


def flat(x, A, b, R, eps=EPS, ones=None):
    """LRP-flat (Lapuschkin et al. 2019) as Zennit's Flat.

    Input and weights set to ones, bias zeroed: ``R_i = Σ_j 1_ji R_j / stab(Σ_i 1_ji)``.
    ``x`` and ``b`` only give the shape.

    Parameters
    ----------
    ones : array like ``A``, optional
        The layer's dense matrix with every *weight* set to one (for a conv:
        ``conv_to_dense(np.ones_like(W), ...)``, so padding and group structure count). Defaults to
        an all-ones matrix, right for fully connected layers only.
    """
    x, A, b, R, shape = _prepare(x, A, b, R)
    ones = np.ones_like(A) if ones is None else np.asarray(ones, dtype=np.float64)
    return redistribute(ones, ones.sum(axis=1), R, eps).reshape(shape)


def wsquare(x, A, b, R, eps=EPS):
    """LRP-w² (Montavon et al. 2017) as Zennit's WSquare.

    Input set to ones, all parameters squared, bias included:
    ``R_i = Σ_j A²_ji R_j / stab(Σ_i A²_ji + b²_j)``.
    """
    x, A, b, R, shape = _prepare(x, A, b, R)
    A2 = A ** 2
    return redistribute(A2, A2.sum(axis=1) + b ** 2, R, eps).reshape(shape)


def _bound(value, shape):
    """Broadcast a ZBox bound to the per-sample input shape (leading size-1 axes dropped)."""
    value = np.asarray(value, dtype=np.float64)
    while value.ndim > len(shape) and value.shape[0] == 1:
        value = value[0]
    return np.broadcast_to(value, shape).reshape(-1)


def zbox(x, A, b, R, low, high, eps=EPS):
    """LRP-z^B (Montavon et al. 2017) as Zennit's ZBox.

    ``c_ji = x_i A_ji − l_i A⁺_ji − h_i A⁻_ji``; ``R_i = Σ_j c_ji R_j / stab(Σ_i c_ji + b − b⁺ − b⁻)``.
    Zennit keeps the bias in all three forwards (b, b⁺, b⁻), so it cancels in the denominator.

    Parameters
    ----------
    low, high : scalars or arrays broadcastable to ``x``'s (per-sample) shape
    """
    x_arr = np.asarray(x, dtype=np.float64)
    x, A, b, R, shape = _prepare(x_arr, A, b, R)
    lo, hi = _bound(low, shape), _bound(high, shape)
    C = contributions(x, A) - contributions(lo, pos(A)) - contributions(hi, neg(A))
    denom = C.sum(axis=1) + (b - pos(b) - neg(b))
    return redistribute(C, denom, R, eps).reshape(shape)


def norm(x, A, R, eps=EPS):
    """Zennit's Norm: parameter-free Epsilon, ``R_i = Σ_j x_i A_ji R_j / stab((A x)_j)``.

    ``A`` is a parameter-free linear map (Add, sum, average pool).
    """
    return epsilon(x, A, None, R, eps)


RULES = {
    "epsilon": epsilon,
    "zplus": zplus,
    "alpha_beta": alpha_beta,
    "gamma": gamma,
    "flat": flat,
    "wsquare": wsquare,
    "zbox": zbox,
}


def batched(rule, X, R, **layer):
    """Apply a one-sample rule to every sample of a batch.

    Parameters
    ----------
    rule : callable, one of the rule functions above
    X : array (N, ...)
    R : array (N, ...)
    layer : keyword arguments passed to ``rule`` (``A=``, ``b=``, ``eps=``, ``low=``, ...)

    Returns
    -------
    array like ``X``
    """
    X = np.asarray(X, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    return np.stack([rule(x=X[n], R=R[n], **layer) for n in range(X.shape[0])])
