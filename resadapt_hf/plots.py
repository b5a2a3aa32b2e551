"""Small PIL-only charts (no matplotlib): a multi-series line chart and a heatmap with a colour bar.

Both functions write a PNG and return its path. They draw real axes (nice-number ticks, grid lines, labelled x/y
axes, a legend or colour bar), so a figure is readable on its own:

* :func:`line_chart`: ``{series name: [(x, y), ...]}``, one coloured line with markers per series (a single point
  is drawn as a marker), optional dashed horizontal reference lines (e.g. the uncompressed baseline).
* :func:`heatmap`: rows of values (e.g. per-frame scales of several videos) on a sequential colour ramp between
  ``vmin`` and ``vmax``, optional outlined cells (e.g. the frames that hold the answer), NaN / missing cells grey.

Used by ``resadapt eval`` (frontier and scale heatmap) and meant for the benchmarks' figures as well.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = ["PALETTE", "colour_ramp", "heatmap", "line_chart", "nice_ticks"]

# Tableau-10: distinct, colour-blind-friendly line colours.
PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
# A viridis-like sequential ramp (dark blue -> teal -> yellow), interpolated linearly.
_RAMP = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
_MISSING = (225, 225, 225)
_GRID = (228, 228, 228)
_AXIS = (40, 40, 40)
_BACKGROUND = "white"


def font(size: int):
    """PIL's default font at ``size`` px (the fixed bitmap font where Pillow has no FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _check_size(size) -> tuple[int, int]:
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 200 for v in size)):
        raise ValueError(f"size must be (width, height) with integers >= 200, got {size!r}")
    return int(size[0]), int(size[1])


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2, 2.5 or 5 x 10^k) covering ``[low, high]``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"tick range must be finite, got [{low}, {high}]")
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _format_tick(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:  # e.g. 0.25
        decimals += 1
    return f"{value:.{decimals}f}"


def _padded_range(values: Sequence[float], limits) -> tuple[float, float]:
    if limits is not None:
        low, high = float(limits[0]), float(limits[1])
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"axis limits must be two finite numbers with low < high, got {limits!r}")
        return low, high
    low, high = min(values), max(values)
    if high - low < 1e-12:
        pad = abs(high) * 0.1 or 0.5
        return low - pad, high + pad
    pad = (high - low) * 0.06
    return low - pad, high + pad


def _dashed_line(draw, start, end, fill, width=1, dash=8, gap=6):
    (x0, y0), (x1, y1) = start, end
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0:
        return
    ux, uy, position = (x1 - x0) / length, (y1 - y0) / length, 0.0
    while position < length:
        stop = min(position + dash, length)
        draw.line([(x0 + ux * position, y0 + uy * position), (x0 + ux * stop, y0 + uy * stop)], fill=fill, width=width)
        position = stop + gap


def _vertical_text(image: Image.Image, text: str, font, centre: tuple[float, float], fill=_AXIS):
    probe = ImageDraw.Draw(image)
    width, height = _text_size(probe, text, font)
    label = Image.new("RGBA", (width + 4, height + 6), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((2, 0), text, font=font, fill=fill)
    label = label.rotate(90, expand=True)
    image.paste(label, (int(centre[0] - label.width / 2), int(centre[1] - label.height / 2)), label)


_MARKERS = ("circle", "square", "triangle", "diamond", "down")


def _marker(draw: ImageDraw.ImageDraw, index: int, x: float, y: float, colour, r: float = 5.0):
    shape = _MARKERS[index % len(_MARKERS)]
    if shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour, outline="white")
    elif shape == "square":
        draw.rectangle([x - r + 1, y - r + 1, x + r - 1, y + r - 1], fill=colour, outline="white")
    elif shape == "triangle":
        draw.polygon([(x, y - r - 1), (x + r, y + r - 1), (x - r, y + r - 1)], fill=colour, outline="white")
    elif shape == "diamond":
        draw.polygon([(x, y - r - 1), (x + r + 1, y), (x, y + r + 1), (x - r - 1, y)], fill=colour, outline="white")
    else:
        draw.polygon([(x, y + r + 1), (x + r, y - r + 1), (x - r, y - r + 1)], fill=colour, outline="white")


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    path,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    references: Mapping[str, float] | None = None,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    size: tuple[int, int] = (900, 560),
    sort_x: bool = True,
) -> Path:
    """Draw one line (with point markers, a distinct shape per series) per series and write a PNG.

    Args:
        series: ``{name: [(x, y), ...]}`` in legend order (the first is drawn on top); a series with one point is
            drawn as a marker, an empty one only appears in the legend. Non-finite points are skipped.
        path: where to write the PNG (parent folders are created).
        title, xlabel, ylabel: figure title and axis labels.
        references: ``{label: y}`` dashed horizontal lines across the plot, labelled at their right end (e.g. an
            uncompressed baseline's score).
        xlim, ylim: axis ranges ``(low, high)``; default: the data (and references) with a small margin.
        size: image ``(width, height)`` in pixels, each >= 200.
        sort_x: connect each series' points in increasing x (False: in the given order, e.g. training curves).

    Returns:
        The written path.
    """
    if not isinstance(series, Mapping):
        raise TypeError(f"series must be a mapping of name -> [(x, y), ...], got {type(series).__name__}")
    width, height = _check_size(size)
    references = dict(references or {})
    clean: dict[str, list[tuple[float, float]]] = {}
    for name, points in series.items():
        pts = []
        for point in points:
            if len(point) != 2:
                raise ValueError(f"series[{name!r}]: every point must be an (x, y) pair, got {point!r}")
            x, y = float(point[0]), float(point[1])
            if math.isfinite(x) and math.isfinite(y):
                pts.append((x, y))
        clean[str(name)] = sorted(pts) if sort_x else pts
    xs = [x for pts in clean.values() for x, _ in pts]
    ys = [y for pts in clean.values() for _, y in pts] + [float(v) for v in references.values()]
    x_low, x_high = _padded_range(xs or [0.0, 1.0], xlim)
    y_low, y_high = _padded_range(ys or [0.0, 1.0], ylim)

    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    title_font, label_font, tick_font = font(18), font(14), font(12)
    legend_width = 0
    if clean:
        legend_width = max(_text_size(draw, name, tick_font)[0] for name in clean) + 48
    left, right = 78, width - 24 - legend_width
    top, bottom = 48 if title else 24, height - 62
    if right - left < 80:
        raise ValueError(f"size {size} is too small for the legend; widen the figure")

    def px(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y_low) / (y_high - y_low) * (bottom - top)

    x_ticks = [t for t in nice_ticks(x_low, x_high) if x_low - 1e-12 <= t <= x_high + 1e-12]
    y_ticks = [t for t in nice_ticks(y_low, y_high) if y_low - 1e-12 <= t <= y_high + 1e-12]
    x_step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    for t in x_ticks:
        draw.line([(px(t), top), (px(t), bottom)], fill=_GRID)
        text = _format_tick(t, x_step)
        tw, _ = _text_size(draw, text, tick_font)
        draw.line([(px(t), bottom), (px(t), bottom + 5)], fill=_AXIS)
        draw.text((px(t) - tw / 2, bottom + 8), text, font=tick_font, fill=_AXIS)
    for t in y_ticks:
        draw.line([(left, py(t)), (right, py(t))], fill=_GRID)
        text = _format_tick(t, y_step)
        tw, th = _text_size(draw, text, tick_font)
        draw.line([(left - 5, py(t)), (left, py(t))], fill=_AXIS)
        draw.text((left - 9 - tw, py(t) - th / 2 - 2), text, font=tick_font, fill=_AXIS)
    draw.rectangle([left, top, right, bottom], outline=_AXIS)

    for label, value in references.items():
        y = py(float(value))
        if top <= y <= bottom:
            _dashed_line(draw, (left, y), (right, y), fill=(90, 90, 90))
            tw, th = _text_size(draw, label, tick_font)
            draw.text((right - tw - 4, y - th - 6), label, font=tick_font, fill=(70, 70, 70))

    # the first series is drawn last (on top): put the headline series first; distinct markers keep coinciding
    # points of several series visible
    for i, (name, pts) in reversed(list(enumerate(clean.items()))):  # points outside the limits sit on the edge
        colour = PALETTE[i % len(PALETTE)]
        xy = [(min(max(px(x), left), right), min(max(py(y), top), bottom)) for x, y in pts]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=3, joint="curve")
        for x, y in xy:
            _marker(draw, i, x, y, colour)

    if clean:  # legend, right of the plot
        lx, ly = right + 16, top + 4
        for i, name in enumerate(clean):
            colour = PALETTE[i % len(PALETTE)]
            draw.line([(lx, ly + 8), (lx + 22, ly + 8)], fill=colour, width=3)
            _marker(draw, i, lx + 11, ly + 8, colour)
            draw.text((lx + 28, ly), name, font=tick_font, fill=_AXIS)
            ly += 22

    if title:
        tw, _ = _text_size(draw, title, title_font)
        draw.text(((left + right) / 2 - tw / 2, 14), title, font=title_font, fill=_AXIS)
    if xlabel:
        tw, _ = _text_size(draw, xlabel, label_font)
        draw.text(((left + right) / 2 - tw / 2, height - 30), xlabel, font=label_font, fill=_AXIS)
    if ylabel:
        _vertical_text(image, ylabel, label_font, (18, (top + bottom) / 2))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out


def colour_ramp(value: float, vmin: float, vmax: float) -> tuple[int, int, int]:
    """RGB of ``value`` on the sequential ramp (clipped to ``[vmin, vmax]``); NaN gives light grey."""
    if value is None or not math.isfinite(value):
        return _MISSING
    t = 0.0 if vmax <= vmin else min(max((value - vmin) / (vmax - vmin), 0.0), 1.0)
    position = t * (len(_RAMP) - 1)
    i = min(int(position), len(_RAMP) - 2)
    f = position - i
    a, b = _RAMP[i], _RAMP[i + 1]
    return tuple(round(a[k] + (b[k] - a[k]) * f) for k in range(3))


def heatmap(
    rows: Sequence[Sequence[float]],
    path,
    *,
    row_labels: Sequence[str] | None = None,
    title: str = "",
    vmin: float | None = None,
    vmax: float | None = None,
    xlabel: str = "frame",
    colorbar_label: str = "",
    highlights: Sequence[Sequence[int]] | None = None,
    annotate: bool | None = None,
    size: tuple[int, int] | None = None,
) -> Path:
    """Draw ``rows`` as coloured cells (row i, column j = ``rows[i][j]``) with a colour bar and write a PNG.

    Args:
        rows: one sequence of values per row; rows may differ in length (missing cells and NaN are grey).
        path: where to write the PNG.
        row_labels: one label per row (default ``0, 1, ...``), drawn left of the rows.
        title: figure title.
        vmin, vmax: colour range (default: the data's min and max); values outside are clipped.
        xlabel: label of the column axis (columns are numbered 0, 1, ...).
        colorbar_label: label next to the colour bar.
        highlights: per row, the column indices to outline in red (e.g. the frames holding the answer).
        annotate: write each value in its cell (default: when the cells are wide enough).
        size: ``(width, height)``; default: sized to the cells (12-48 px wide, 10-28 px high).

    Returns:
        The written path.
    """
    rows = [[float("nan") if v is None else float(v) for v in row] for row in rows]
    if not rows or not any(rows):
        raise ValueError("rows must hold at least one non-empty row of values")
    num_rows, num_cols = len(rows), max(len(r) for r in rows)
    labels = [str(i) for i in range(num_rows)] if row_labels is None else [str(x) for x in row_labels]
    if len(labels) != num_rows:
        raise ValueError(f"row_labels has {len(labels)} entries for {num_rows} rows")
    if highlights is not None and len(highlights) != num_rows:
        raise ValueError(f"highlights has {len(highlights)} entries for {num_rows} rows")
    finite = [v for row in rows for v in row if math.isfinite(v)]
    low = min(finite) if vmin is None and finite else (0.0 if vmin is None else float(vmin))
    high = max(finite) if vmax is None and finite else (1.0 if vmax is None else float(vmax))
    if not (math.isfinite(low) and math.isfinite(high)) or high < low:
        raise ValueError(f"vmin/vmax must be finite with vmin <= vmax, got {low}, {high}")
    if high == low:
        high = low + 1e-6

    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_font, label_font, tick_font, cell_font = font(18), font(14), font(12), font(10)
    label_width = max(_text_size(probe, s, tick_font)[0] for s in labels) + 14
    colorbar_width = 90 + (20 if colorbar_label else 0)
    top, bottom_margin = (48 if title else 20), 56
    if size is None:
        cell_w = max(12, min(48, 720 // num_cols))
        cell_h = max(10, min(28, 560 // num_rows))
        width = 16 + label_width + cell_w * num_cols + colorbar_width
        height = top + cell_h * num_rows + bottom_margin
        title_width = _text_size(probe, title, title_font)[0] + 24 if title else 0
        width, height = max(width, 360, title_width), max(height, 220)
    else:
        width, height = _check_size(size)
        cell_w = (width - 16 - label_width - colorbar_width) / num_cols
        cell_h = (height - top - bottom_margin) / num_rows
        if cell_w < 2 or cell_h < 2:
            raise ValueError(f"size {size} is too small for {num_rows} x {num_cols} cells")
    if annotate is None:
        annotate = cell_w >= 34 and cell_h >= 14
    left = 16 + label_width
    image = Image.new("RGB", (int(width), int(height)), _BACKGROUND)
    draw = ImageDraw.Draw(image)

    for i, row in enumerate(rows):
        y0 = top + i * cell_h
        for j in range(num_cols):
            value = row[j] if j < len(row) else float("nan")
            x0 = left + j * cell_w
            colour = colour_ramp(value, low, high)
            draw.rectangle([x0, y0, x0 + cell_w - 1, y0 + cell_h - 1], fill=colour)
            if annotate and math.isfinite(value):
                text = f"{value:.2f}"
                tw, th = _text_size(draw, text, cell_font)
                ink = "white" if sum(colour) < 380 else "black"
                draw.text((x0 + (cell_w - tw) / 2, y0 + (cell_h - th) / 2 - 1), text, font=cell_font, fill=ink)
        tw, th = _text_size(draw, labels[i], tick_font)
        draw.text((left - 8 - tw, y0 + cell_h / 2 - th / 2 - 2), labels[i], font=tick_font, fill=_AXIS)
    for i, columns in enumerate(highlights or []):
        y0 = top + i * cell_h
        for j in columns:
            if 0 <= int(j) < num_cols:
                x0 = left + int(j) * cell_w
                draw.rectangle([x0, y0, x0 + cell_w - 1, y0 + cell_h - 1], outline=(230, 20, 20), width=2)
    grid_right, grid_bottom = left + num_cols * cell_w, top + num_rows * cell_h
    draw.rectangle([left - 1, top - 1, grid_right, grid_bottom], outline=_AXIS)

    every = max(1, math.ceil(num_cols / max(1, int((grid_right - left) // 28))))
    for j in range(0, num_cols, every):
        text = str(j)
        tw, _ = _text_size(draw, text, tick_font)
        cx = left + (j + 0.5) * cell_w
        draw.line([(cx, grid_bottom), (cx, grid_bottom + 4)], fill=_AXIS)
        draw.text((cx - tw / 2, grid_bottom + 6), text, font=tick_font, fill=_AXIS)
    if xlabel:
        tw, _ = _text_size(draw, xlabel, label_font)
        draw.text(((left + grid_right) / 2 - tw / 2, grid_bottom + 26), xlabel, font=label_font, fill=_AXIS)

    # colour bar with ticks
    bar_left, bar_w = grid_right + 22, 16
    bar_top, bar_bottom = top, max(grid_bottom, top + 120)
    steps = int(bar_bottom - bar_top)
    for k in range(steps):
        value = high - (high - low) * k / max(steps - 1, 1)
        draw.line([(bar_left, bar_top + k), (bar_left + bar_w, bar_top + k)], fill=colour_ramp(value, low, high))
    draw.rectangle([bar_left, bar_top, bar_left + bar_w, bar_bottom], outline=_AXIS)
    ticks = [t for t in nice_ticks(low, high, 5) if low - 1e-9 <= t <= high + 1e-9] or [low, high]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    for t in ticks:
        y = bar_bottom - (t - low) / (high - low) * (bar_bottom - bar_top)
        text = _format_tick(t, step)
        _, th = _text_size(draw, text, tick_font)
        draw.line([(bar_left + bar_w, y), (bar_left + bar_w + 4, y)], fill=_AXIS)
        draw.text((bar_left + bar_w + 7, y - th / 2 - 2), text, font=tick_font, fill=_AXIS)
    if colorbar_label:
        _vertical_text(image, colorbar_label, label_font, (bar_left + bar_w + 62, (bar_top + bar_bottom) / 2))
    if title:
        tw, _ = _text_size(draw, title, title_font)
        draw.text((max(8, width / 2 - tw / 2), 14), title, font=title_font, fill=_AXIS)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out
