"""The status page's two small charts, drawn on the server as inline SVG. Pure.

No script and no library: an SVG element is markup, so the page's CSP (no inline script, no
inline style) allows it, and it shows with JavaScript off. Colours come from classes in ui.css.
Every text drawn is escaped; numbers are formatted by us.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from tfops.models import FAILURE_STATUSES, Run
from tfops.store.ui_queries import TroubleDay

WIDTH = 560
HEIGHT = 140
_PAD_LEFT = 28
_PAD_BOTTOM = 20
_PAD_TOP = 8


@dataclass(frozen=True)
class Bar:
    label: str  # under the bar (a day, a run id)
    value: float
    css: str  # class: "drifted", "failed", "ok", ...
    title: str  # the tooltip


def trouble_chart(days: Sequence[TroubleDay]) -> Markup:
    """Drifted and failed stacks per day: two bars a day."""
    bars: list[tuple[str, list[Bar]]] = [
        (
            day.day.strftime("%d %b"),
            [
                Bar("", day.drifted, "drifted", f"{day.day.isoformat()}: {day.drifted} stack(s) drifted"),
                Bar(
                    "",
                    day.failed,
                    "failed",
                    f"{day.day.isoformat()}: {day.failed} stack(s) with a failed run",
                ),
            ],
        )
        for day in days
    ]
    return _grouped_bars(bars, "drifted and failed stacks per day", unit="")


def durations_chart(bars: Sequence[Bar]) -> Markup:
    """Run durations in seconds, oldest first, one bar a run."""
    return _grouped_bars([(bar.label, [bar]) for bar in bars], "run durations (seconds)", unit="s")


def run_bars(runs: Iterable[Run]) -> list[Bar]:
    """One bar per run that started and finished: its duration, red when it failed."""
    bars = []
    for run in runs:
        if run.started_at is None or run.finished_at is None:
            continue
        seconds = max(0.0, (run.finished_at - run.started_at).total_seconds())
        css = "failed" if run.status in FAILURE_STATUSES else "ok"
        title = f"run {run.id} ({run.kind.value}, {run.status.value}): {seconds:.0f}s"
        bars.append(Bar(f"#{run.id}", seconds, css, title))
    return bars


def _grouped_bars(groups: Sequence[tuple[str, Sequence[Bar]]], title: str, *, unit: str) -> Markup:
    top = max((bar.value for _, bars in groups for bar in bars), default=0.0)
    scale_top = _nice(top)
    plot_w = WIDTH - _PAD_LEFT - 4
    plot_h = HEIGHT - _PAD_BOTTOM - _PAD_TOP
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line class="axis" x1="{_PAD_LEFT}" y1="{_PAD_TOP + plot_h}" x2="{WIDTH - 4}" '
        f'y2="{_PAD_TOP + plot_h}"/>',
        f'<text class="tick" x="{_PAD_LEFT - 4}" y="{_PAD_TOP + plot_h}" text-anchor="end">0</text>',
    ]
    if scale_top > 0:
        parts.append(
            f'<text class="tick" x="{_PAD_LEFT - 4}" y="{_PAD_TOP + 8}" text-anchor="end">'
            f"{_number(scale_top)}{unit}</text>"
        )
    if not groups:
        parts.append(
            f'<text class="tick" x="{WIDTH // 2}" y="{HEIGHT // 2}" text-anchor="middle">no data</text>'
        )
    slot = plot_w / max(1, len(groups))
    label_every = max(1, len(groups) // 10)
    for index, (label, bars) in enumerate(groups):
        x0 = _PAD_LEFT + index * slot
        width = max(1.0, (slot * 0.8) / max(1, len(bars)))
        for offset, bar in enumerate(bars):
            height = 0.0 if scale_top == 0 else plot_h * bar.value / scale_top
            x = x0 + slot * 0.1 + offset * width
            y = _PAD_TOP + plot_h - height
            parts.append(
                f'<rect class="bar {escape(bar.css)}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                f'height="{height:.1f}"><title>{escape(bar.title)}</title></rect>'
            )
        if label and index % label_every == 0:
            parts.append(
                f'<text class="tick" x="{x0 + slot / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice(value: float) -> float:
    """The axis top: the value rounded up to 1, 2 or 5 times a power of ten (0 stays 0)."""
    if value <= 0:
        return 0.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    while step > value * 10:
        step /= 10
    for factor in (1, 2, 5, 10):
        if step * factor >= value:
            return step * factor
    return step * 10


def _number(value: float) -> str:
    return f"{value:g}"
