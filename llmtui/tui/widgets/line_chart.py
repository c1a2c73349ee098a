"""A small line chart drawn with Unicode braille dots (2×4 dots per cell): training and validation loss."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widget import Widget

_DOT = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row][column] bit of a braille cell


class LineChart(Widget):
    """Series of (x, y) points, each in its own colour, on shared axes with a y-axis scale."""

    def __init__(self, title: str = "", **kwargs):
        super().__init__(**kwargs)
        self.title = title
        self.series: dict[str, tuple[str, list[tuple[float, float]]]] = {}
        self.x_max: float | None = None

    def set_series(self, name: str, colour: str, points: list[tuple[float, float]]) -> None:
        self.series[name] = (colour, [(x, y) for x, y in points if math.isfinite(y)])
        self.refresh()

    def clear(self) -> None:
        self.series.clear()
        self.refresh()

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        points = [p for _, pts in self.series.values() for p in pts]
        legend = Text(self.title + "  ", style="bold")
        for name, (colour, pts) in self.series.items():
            legend.append("● ", style=colour)
            legend.append(f"{name} {pts[-1][1]:.3f}  " if pts else f"{name}  ")
        if not points or height < 3 or width < 12:
            return legend + Text("\n(no points yet)", style="dim")
        ys = [y for _, y in points]
        y_low, y_high = min(ys), max(ys)
        if y_high - y_low < 1e-9:
            y_low, y_high = y_low - 0.5, y_high + 0.5
        x_high = max(self.x_max or 0, max(x for x, _ in points))
        x_low = min(x for x, _ in points)
        x_span = max(x_high - x_low, 1e-9)
        label_width = 7
        cols, rows = width - label_width, height - 2  # legend line and x-axis line
        cells: list[list[int]] = [[0] * cols for _ in range(rows)]
        owner: list[list[str]] = [[""] * cols for _ in range(rows)]
        for colour, pts in self.series.values():
            previous = None
            for x, y in pts:
                dot = (
                    round((x - x_low) / x_span * (cols * 2 - 1)),
                    round((y_high - y) / (y_high - y_low) * (rows * 4 - 1)),
                )
                for dx, dy in _segment(previous, dot):
                    cells[dy // 4][dx // 2] |= _DOT[dy % 4][dx % 2]
                    owner[dy // 4][dx // 2] = colour
                previous = dot
        text = legend + Text("\n")
        for row in range(rows):
            if row == 0:
                label = f"{y_high:>6.2f} "
            elif row == rows - 1:
                label = f"{y_low:>6.2f} "
            else:
                label = " " * 6 + "│"
            text.append(label[:label_width], style="dim")
            for col in range(cols):
                bits = cells[row][col]
                text.append(chr(0x2800 + bits) if bits else " ", style=owner[row][col] or None)
            text.append("\n")
        axis = f"{x_low:g}".ljust(cols // 2) + f"step {x_high:g}".rjust(cols - cols // 2)
        text.append(" " * label_width + axis, style="dim")
        return text


def _segment(start: tuple[int, int] | None, end: tuple[int, int]) -> list[tuple[int, int]]:
    """Dots on the straight line from start to end (just `end` when there is no start)."""
    if start is None:
        return [end]
    (x0, y0), (x1, y1) = start, end
    steps = max(abs(x1 - x0), abs(y1 - y0), 1)
    return [(round(x0 + (x1 - x0) * i / steps), round(y0 + (y1 - y0) * i / steps)) for i in range(1, steps + 1)]
