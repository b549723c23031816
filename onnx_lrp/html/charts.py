"""Line charts as inline SVG (no script, no library): perturbation curves, the randomisation
check and relevance per layer. Names in legends and point tooltips are escaped."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .page import esc, fmt

#: Okabe–Ito colours (colour-blind safe), as :data:`onnx_lrp.plotting.PALETTE`
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#787878", "#f0e442")
LEFT, RIGHT, TOP, BOTTOM = 62, 170, 18, 42


@dataclass
class Series:
    """One line: its name (legend), x and y values, dashed or not, and optional per-point tooltips."""

    name: str
    x: np.ndarray
    y: np.ndarray
    dashed: bool = False
    colour: str | None = None
    tips: list[str] = field(default_factory=list)


def line_chart(series: list[Series], *, x_label: str = "", y_label: str = "", width: int = 640,
               height: int = 280, reference: tuple[float, str] | None = None, markers: bool = False,
               legend: bool = True, integer_x: bool = False) -> str:
    """An SVG chart of ``series``; ``reference`` = (y, name) draws a labelled horizontal line;
    ``integer_x`` puts the x ticks on whole numbers (steps, layer indices)."""
    values = [np.asarray(s.y, np.float64) for s in series]
    if reference is not None:
        values.append(np.array([reference[0]], np.float64))
    ylo, yhi = axis_limits(np.concatenate(values) if values else np.zeros(1))
    xs = np.concatenate([np.asarray(s.x, np.float64) for s in series]) if series else np.zeros(1)
    xs = xs[np.isfinite(xs)]
    xlo, xhi = (float(xs.min()), float(xs.max())) if xs.size else (0.0, 1.0)
    xhi = xhi if xhi > xlo else xlo + 1.0
    x0, y0, x1, y1 = LEFT, TOP, width - (RIGHT if legend else 16), height - BOTTOM

    def px(x, y):
        return x0 + (x - xlo) / (xhi - xlo) * (x1 - x0), y1 - (y - ylo) / (yhi - ylo) * (y1 - y0)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">',
             f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="#fff" stroke="#999"/>']
    parts += _ticks(px, xlo, xhi, ylo, yhi, x0, y0, x1, y1, integer_x)
    parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{height - 6}" text-anchor="middle">{esc(x_label)}</text>')
    parts.append(f'<text x="{x0}" y="{y0 - 3}">{esc(y_label)}</text>')
    if reference is not None:
        _, ry = px(xlo, reference[0])
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{ry:.1f}" y2="{ry:.1f}" stroke="#888" stroke-dasharray="2 3"/>'
                     f'<text x="{x1 - 4}" y="{ry - 4:.1f}" text-anchor="end">{esc(reference[1])}</text>')
    for i, s in enumerate(series):
        parts += _line(s, s.colour or PALETTE[i % len(PALETTE)], px, markers)
        if legend:
            parts += _legend(s, s.colour or PALETTE[i % len(PALETTE)], x1 + 12, y0 + 6 + 18 * i)
    parts.append("</svg>")
    return "".join(parts)


def axis_limits(values: np.ndarray) -> tuple[float, float]:
    """The value axis of a chart: the finite values' range with 5 % room on each side ((0, 1)
    when none is finite; ±10 % around a single value)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    pad = 0.05 * (high - low) if high > low else max(abs(high), 1.0) * 0.1
    return low - pad, high + pad


def _ticks(px, xlo, xhi, ylo, yhi, x0, y0, x1, y1, integer_x: bool) -> list[str]:
    out = []
    xticks = np.linspace(xlo, xhi, 6)
    if integer_x:
        xticks = np.unique(np.round(xticks))
    for t in xticks:
        x, _ = px(t, ylo)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y1}" y2="{y1 + 4}" stroke="#333"/>'
                   f'<text x="{x:.1f}" y="{y1 + 16}" text-anchor="middle">{fmt(t, 3)}</text>')
    for v in np.linspace(ylo, yhi, 5):
        _, y = px(xlo, v)
        out.append(f'<line x1="{x0 + 1}" x2="{x1 - 1}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(v, 3)}</text>')
    return out


def _line(s: Series, colour: str, px, markers: bool) -> list[str]:
    points = [(px(float(a), float(b)), k) for k, (a, b) in enumerate(zip(s.x, s.y))
              if np.isfinite(a) and np.isfinite(b)]
    if not points:
        return []
    dash = ' stroke-dasharray="6 4"' if s.dashed else ""
    path = " ".join(f"{x:.1f},{y:.1f}" for (x, y), _ in points)
    out = [f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>']
    if markers or s.tips:
        for (x, y), k in points:
            tip = f"<title>{esc(s.tips[k])}</title>" if k < len(s.tips) else ""
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{3 if markers else 2}" fill="{colour}">{tip}</circle>')
    return out


def _legend(s: Series, colour: str, x: float, y: float) -> list[str]:
    dash = ' stroke-dasharray="6 4"' if s.dashed else ""
    name = s.name if len(s.name) <= 24 else s.name[:23] + "…"
    return [f'<line x1="{x}" x2="{x + 22}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="2"{dash}/>',
            f'<text x="{x + 28}" y="{y + 4}">{esc(name)}<title>{esc(s.name)}</title></text>']
