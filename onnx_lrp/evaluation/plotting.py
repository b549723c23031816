"""Line plots of perturbation curves drawn with numpy and Pillow (no matplotlib)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..files import write_atomic
from ..html.charts import axis_limits

#: Distinct colours (Okabe–Ito, colour-blind safe) for the methods, in order.
PALETTE = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233),
           (120, 120, 120), (240, 228, 66)]

WIDTH, HEIGHT = 760, 460
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 190, 40, 55


def plot_perturbation_curves(curves: dict, path, title: str = "region perturbation") -> Path:
    """Draw MoRF (solid) and LeRF (dashed) curves, one colour per method, and write a PNG.

    Parameters
    ----------
    curves : dict, method -> (fraction (K,), morf (K,), lerf (K,)); lerf may be None
    path : where to write the PNG (written atomically: temporary name, then rename)
    """
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    values = [np.asarray(c, np.float64) for _, m, l in curves.values() for c in (m, l) if c is not None]
    low, high = axis_limits(np.concatenate(values) if values else np.zeros(1))
    box = (MARGIN_LEFT, MARGIN_TOP, WIDTH - MARGIN_RIGHT, HEIGHT - MARGIN_BOTTOM)

    def to_px(fx, fy):
        x0, y0, x1, y1 = box
        px = x0 + np.asarray(fx, np.float64) * (x1 - x0)
        py = y1 - (np.asarray(fy, np.float64) - low) / (high - low) * (y1 - y0)
        return px, py

    _axes(draw, font, box, low, high, to_px)
    draw.text((MARGIN_LEFT, 12), title, fill="black", font=font)
    legend_y = MARGIN_TOP
    for i, (method, (fraction, morf, lerf)) in enumerate(curves.items()):
        colour = PALETTE[i % len(PALETTE)]
        for curve, dashed in ((morf, False), (lerf, True)):
            if curve is not None:
                _polyline(draw, *to_px(fraction, curve), colour, dashed)
        lx = WIDTH - MARGIN_RIGHT + 15
        draw.line([(lx, legend_y + 6), (lx + 22, legend_y + 6)], fill=colour, width=2)
        draw.text((lx + 28, legend_y), f"{method} MoRF", fill="black", font=font)
        _polyline(draw, np.array([lx, lx + 22]), np.array([legend_y + 22, legend_y + 22]), colour, True)
        draw.text((lx + 28, legend_y + 16), f"{method} LeRF", fill="black", font=font)
        legend_y += 40
    return _save(image, Path(path))


def _axes(draw, font, box, low, high, to_px):
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline="black")
    for t in np.linspace(0, 1, 6):
        px, _ = to_px(t, low)
        draw.line([(px, y1), (px, y1 + 5)], fill="black")
        draw.text((px - 10, y1 + 8), f"{t:.1f}", fill="black", font=font)
    for v in np.linspace(low, high, 6):
        _, py = to_px(0, v)
        draw.line([(x0 - 5, py), (x0, py)], fill="black")
        draw.line([(x0 + 1, py), (x1 - 1, py)], fill=(235, 235, 235))
        draw.text((5, py - 6), f"{v:.3g}", fill="black", font=font)
    draw.text(((x0 + x1) / 2 - 70, y1 + 28), "fraction of patches removed", fill="black", font=font)
    draw.text((5, y0 - 20), "target output", fill="black", font=font)


def _polyline(draw, px, py, colour, dashed: bool):
    points = [(float(a), float(b)) for a, b in zip(px, py) if np.isfinite(a) and np.isfinite(b)]
    if len(points) < 2:
        return
    if not dashed:
        draw.line(points, fill=colour, width=2, joint="curve")
        return
    for (ax, ay), (bx, by) in zip(points[:-1], points[1:]):
        length = float(np.hypot(bx - ax, by - ay))
        n = max(1, int(length // 6))
        for k in range(0, n, 2):
            t0, t1 = k / n, min((k + 1) / n, 1.0)
            draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                      fill=colour, width=2)


def _save(image: Image.Image, path: Path) -> Path:
    return write_atomic(path, lambda handle: image.save(handle, format="PNG"), "PNG ")
