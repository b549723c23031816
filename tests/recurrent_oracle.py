"""LRP for LSTM, GRU and RNN layers in float64 numpy, written from Arras et al. (2017, "Explaining
recurrent neural network predictions in sentiment analysis"; 2019, "Explaining and interpreting
LSTMs") and their reference code's ``lrp_linear``; independent of the ONNX graph onnx-lrp unrolls.

Weights follow the ONNX op's layout: ``W`` [D, G·H, F], ``R`` [D, G·H, H], ``B`` [D, 2·G·H]; gate
order LSTM i, o, f, c (= g); GRU z, r, h (= n). Inputs are batch-first [B, T, F]; outputs
Y [B, T, D, H]. An absent initial state is zero: a step without a previous state has no
``f⊙c'`` / ``z⊙h'`` term, so there is nothing to split.
"""
from __future__ import annotations

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def stab(z, eps):
    """z + ε·sign(z), sign(0) = +1."""
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def lrp_linear(inputs, weight, out, relevance, eps):
    """ε-rule for ``out = weight @ inputs + bias`` (Arras' ``lrp_linear`` with bias_factor 0): the
    bias is in the denominator ``out``, its relevance is absorbed. weight [out, in]."""
    if eps == 0:
        ratio = np.divide(relevance, out, out=np.zeros_like(out), where=out != 0)
    else:
        ratio = relevance / stab(out, eps)
    return inputs * (weight.T @ ratio)


def split(terms, total, relevance, eps):
    """ε-rule split of ``total = Σ terms`` (identity weights, no bias)."""
    return [lrp_linear(t, np.eye(len(t)), total, relevance, eps) for t in terms]


class Recurrent:
    """One recurrent layer, float64: forward pass, gradient and LRP."""

    def __init__(self, op, W, R, B, hidden, direction="forward", linear_before_reset=0):
        self.op, self.hidden, self.lbr = op, hidden, linear_before_reset
        self.W, self.R, self.B = (np.asarray(a, np.float64) for a in (W, R, B))
        self.directions = ["forward", "reverse"] if direction == "bidirectional" else [direction]

    def _orders(self, steps):
        return [range(steps) if d == "forward" else range(steps - 1, -1, -1) for d in self.directions]

    def _weights(self, d, k):
        """(W_k, R_k, Wb_k, Rb_k) of gate k of direction d."""
        H, G = self.hidden, self.W.shape[1] // self.hidden
        s = slice(k * H, (k + 1) * H)
        return self.W[d, s], self.R[d, s], self.B[d, s], self.B[d, G * H:][s]

    def forward(self, x, h0=None, c0=None):
        """Y [T, D, H] for one sample x [T, F] (initial states [D, H] or None), and the per-step
        records the LRP pass reads."""
        steps = len(x)
        Y = np.zeros((steps, len(self.directions), self.hidden))
        records = []
        for d, order in enumerate(self._orders(steps)):
            h = None if h0 is None else np.asarray(h0[d], np.float64)
            c = None if c0 is None else np.asarray(c0[d], np.float64)
            rec = {}
            for t in order:
                rec[t] = self._step(d, x[t], h, c)
                h, c = rec[t]["h"], rec[t].get("c")
                Y[t, d] = h
            records.append(rec)
        return Y, records

    def _step(self, d, x, h, c):
        H = self.hidden
        hz = np.zeros(H) if h is None else h
        if self.op == "RNN":
            W, R, wb, rb = self._weights(d, 0)
            pre = W @ x + R @ hz + wb + rb
            return {"x": x, "h_prev": h, "pre": pre, "h": np.tanh(pre)}
        if self.op == "LSTM":
            (Wi, Ri, bi, ri), (Wo, Ro, bo, ro), (Wf, Rf, bf, rf), (Wg, Rg, bg, rg) = (
                self._weights(d, k) for k in range(4))
            i = sigmoid(Wi @ x + Ri @ hz + bi + ri)
            o = sigmoid(Wo @ x + Ro @ hz + bo + ro)
            f = sigmoid(Wf @ x + Rf @ hz + bf + rf)
            g_pre = Wg @ x + Rg @ hz + bg + rg
            g = np.tanh(g_pre)
            c_new = i * g + (0 if c is None else f * c)
            return {"x": x, "h_prev": h, "c_prev": c, "i": i, "f": f, "o": o, "g": g, "g_pre": g_pre,
                    "c": c_new, "h": o * np.tanh(c_new)}
        (Wz, Rz, bz, rz), (Wr, Rr, br, rr), (Wn, Rn, bn, rn) = (self._weights(d, k) for k in range(3))
        z = sigmoid(Wz @ x + Rz @ hz + bz + rz)
        r = sigmoid(Wr @ x + Rr @ hz + br + rr)
        rec = {"x": x, "h_prev": h, "z": z, "r": r}
        if self.lbr:
            rec["a"] = Wn @ x + bn
            rec["bh"] = Rn @ hz + rn
            rec["pre"] = rec["a"] + r * rec["bh"]
        else:
            rec["pre"] = Wn @ x + Rn @ (r * hz) + bn + rn
        n = np.tanh(rec["pre"])
        rec["n"] = n
        rec["h"] = (1 - z) * n + (0 if h is None else z * h)
        return rec

    def lrp(self, x, R_Y, eps=1e-6, cell_eps=1e-6, sum_eps=1e-6, h0=None, c0=None):
        """Relevance of x [T, F] given relevance R_Y [T, D, H] at the outputs.

        ``eps``: the ε of the linear maps; ``cell_eps``: of the cell-update split
        (c = f⊙c' + i⊙g; GRU h = (1−z)⊙n + z⊙h'); ``sum_eps``: of the GRU's
        ``Wn·x + Wbn + r⊙(Rn·h + Rbn)`` split (linear_before_reset=1). The relevance of the
        initial states ``h0``/``c0`` is absorbed (they are not the explained input)."""
        _, records = self.forward(x, h0, c0)
        R_x = np.zeros_like(x, dtype=np.float64)
        for d, order in enumerate(self._orders(len(x))):
            R_h_next, R_c_next = np.zeros(self.hidden), np.zeros(self.hidden)
            for t in reversed(list(order)):
                rec = records[d][t]
                R_h = R_Y[t, d] + R_h_next
                R_xt, R_h_next, R_c_next = getattr(self, f"_lrp_{self.op.lower()}")(
                    d, rec, R_h, R_c_next, eps, cell_eps, sum_eps)
                R_x[t] += R_xt
        return R_x

    def _joint(self, d, k, rec, h_in, R_pre, pre, eps):
        """ε-rule through ``pre = W_k x + R_k h_in + b``: one denominator for x and h (Arras)."""
        W, R, _, _ = self._weights(d, k)
        if h_in is None:
            return lrp_linear(rec["x"], W, pre, R_pre, eps), np.zeros(self.hidden)
        both = lrp_linear(np.concatenate([rec["x"], h_in]), np.concatenate([W, R], axis=1), pre, R_pre, eps)
        return both[:len(rec["x"])], both[len(rec["x"]):]

    def _lrp_rnn(self, d, rec, R_h, R_c, eps, cell_eps, sum_eps):
        R_x, R_hp = self._joint(d, 0, rec, rec["h_prev"], R_h, rec["pre"], eps)  # tanh: passes
        return R_x, R_hp, None

    def _lrp_lstm(self, d, rec, R_h, R_c, eps, cell_eps, sum_eps):
        R_c = R_c + R_h  # h = o⊙tanh(c): the gate o gets nothing, tanh passes
        if rec["c_prev"] is None:
            R_g, R_cp = R_c, np.zeros(self.hidden)  # c = i⊙g
        else:
            R_cp, R_g = split([rec["f"] * rec["c_prev"], rec["i"] * rec["g"]], rec["c"], R_c, cell_eps)
        R_x, R_hp = self._joint(d, 3, rec, rec["h_prev"], R_g, rec["g_pre"], eps)  # i⊙g: all to g
        return R_x, R_hp, R_cp

    def _lrp_gru(self, d, rec, R_h, R_c, eps, cell_eps, sum_eps):
        z, r, h = rec["z"], rec["r"], rec["h_prev"]
        if h is None:
            R_n, R_hp = R_h, np.zeros(self.hidden)
        else:
            R_n, R_hp = split([(1 - z) * rec["n"], z * h], rec["h"], R_h, cell_eps)
        Wn, Rn, _, rbn = self._weights(d, 2)
        if not self.lbr:
            R_x, R_rh = self._joint(d, 2, rec, None if h is None else r * h, R_n, rec["pre"], eps)
            return R_x, R_hp + R_rh, None  # r⊙h: all to h
        gated = r * rec["bh"]
        if h is None and not np.any(rbn):
            R_a, R_gated = R_n, np.zeros(self.hidden)
        else:
            R_a, R_gated = split([rec["a"], gated], rec["pre"], R_n, sum_eps)
        R_x = lrp_linear(rec["x"], Wn, rec["a"], R_a, eps)
        if h is not None:  # r⊙(Rn h + Rbn): all to Rn h + Rbn, then the ε-rule to h
            R_hp = R_hp + lrp_linear(h, Rn, rec["bh"], R_gated, eps)
        return R_x, R_hp, None
