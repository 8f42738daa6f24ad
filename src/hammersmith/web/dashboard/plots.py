"""Plots drawn on the server as inline SVG: no JavaScript, no CDN, nothing to vendor, and the page works offline.

Every label that comes from a cloud (a provision state) is escaped: Ironic's words never become markup.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from markupsafe import Markup, escape

from hammersmith.store.dashboard import NodeCounts

#: fixed colours for Ironic's common states (the rest get a stable colour from their name), bad states in red
COLOURS = {
    "active": "#2e8b57",
    "available": "#3b7dd8",
    "manageable": "#8a94a6",
    "enroll": "#b8bfcc",
    "inspecting": "#9b6bd6",
    "cleaning": "#e0a526",
    "clean wait": "#f0c75e",
    "deploying": "#2bb3b1",
    "wait call-back": "#7fd1cf",
    "rescue": "#c97b2e",
    "error": "#c0392b",
    "clean failed": "#e0584a",
    "deploy failed": "#a93226",
    "inspect failed": "#d9776c",
    "rescue failed": "#922b21",
}
#: stacking order, bottom up: healthy states first, failures on top where they stand out
ORDER = tuple(COLOURS)
WIDTH, HEIGHT = 760, 220
#: time axis ticks: the first step that gives at most 8 of them (labels are UTC)
TICK_STEPS = tuple(timedelta(hours=h) for h in (1, 2, 3, 6, 12, 24, 48))
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 12, 10, 26


def colour(state: str) -> str:
    if state in COLOURS:
        return COLOURS[state]
    if "fail" in state or "error" in state:
        return "#b03a2e"
    hue = int(hashlib.sha256(state.encode()).hexdigest()[:4], 16) % 360
    return f"hsl({hue}, 45%, 55%)"


@dataclass(frozen=True)
class Series:
    state: str
    colour: str
    latest: int


@dataclass(frozen=True)
class Plot:
    svg: Markup
    series: tuple[Series, ...]
    points: int


def _states(points: list[NodeCounts]) -> list[str]:
    seen = {s for p in points for s in p.provision_state}
    return [s for s in ORDER if s in seen] + sorted(seen - set(ORDER))


def nodes_by_state(points: list[NodeCounts], start: datetime, end: datetime, label: str) -> Plot:
    """A stacked area per provision state from start to end, and the nodes in maintenance as a dashed line."""
    states = _states(points)
    top = max([sum(p.provision_state.values()) for p in points] + [1])
    span = max((end - start).total_seconds(), 1.0)
    inner_w, inner_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(at: datetime) -> float:
        return PAD_LEFT + inner_w * min(max((at - start).total_seconds() / span, 0.0), 1.0)

    def y(value: float) -> float:
        return PAD_TOP + inner_h * (1 - value / top)

    parts: list[str] = [
        f'<svg class="plot nodes-plot" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'data-points="{len(points)}" data-states="{escape(",".join(states))}" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
    ]
    for tick in (0, top / 2, top):
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
            f'<text x="{PAD_LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" class="tick">{tick:g}</text>'
        )
    step = next((t for t in TICK_STEPS if span / t.total_seconds() <= 8), TICK_STEPS[-1])
    tick = datetime.fromtimestamp((start.timestamp() // step.total_seconds() + 1) * step.total_seconds(), UTC)
    label = "%b %d" if step >= timedelta(days=1) else "%H:%M"
    while tick < end:
        parts.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{PAD_TOP}" y2="{HEIGHT - PAD_BOTTOM}" class="grid"/>'
            f'<text x="{x(tick):.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="tick">{tick:{label}}</text>'
        )
        tick += step
    below = [0] * len(points)
    for state in states:
        above = [b + p.provision_state.get(state, 0) for b, p in zip(below, points, strict=True)]
        if len(points) == 1:  # one sweep so far: a bar one pixel column wide would not show
            x0 = x(points[0].at)
            outline = [(x0 - 3, y(above[0])), (x0 + 3, y(above[0])), (x0 + 3, y(below[0])), (x0 - 3, y(below[0]))]
        else:
            outline = [(x(p.at), y(v)) for p, v in zip(points, above, strict=True)]
            outline += [(x(p.at), y(v)) for p, v in reversed(list(zip(points, below, strict=True)))]
        path = "M" + " L".join(f"{px:.1f},{py:.1f}" for px, py in outline) + " Z"
        latest = points[-1].provision_state.get(state, 0) if points else 0
        parts.append(
            f'<path class="series" d="{path}" fill="{colour(state)}" data-state="{escape(state)}">'
            f"<title>{escape(state)}: {latest} now</title></path>"
        )
        below = above
    if points:
        line = " L".join(f"{x(p.at):.1f},{y(p.maintenance.get('yes', 0)):.1f}" for p in points)
        parts.append(f'<path class="maintenance" d="M{line}"><title>nodes in maintenance</title></path>')
    parts.append("</svg>")
    latest = points[-1].provision_state if points else {}
    series = tuple(Series(s, colour(s), latest.get(s, 0)) for s in states)
    return Plot(Markup("".join(parts)), series, len(points))
