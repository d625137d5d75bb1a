"""Routing streams through a target's switch network within the links' capacity: no IR.

Switches sit on a ``(cols + 1) x (rows + 1)`` grid; a link is one direction of the wire between
two adjacent switches and carries at most ``target.link_capacity`` streams (as
``runtime.pef.validate`` checks). A route is the tuple of switches a stream passes, each
adjacent to the next.

A ``Router`` holds the links one section's streams use so far. ``Router.path`` finds a
point-to-point route with room left: X then Y, else Y then X, else the shortest detour over the
links with room left (breadth first); ``Router.take`` counts a route on its links. Both placers
use it: ``placement`` for the annealed sections, ``parallel_layout`` for a parallel unit's
(whose multicast streams, one path through many switches, it takes as they are).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from compiler.targets import Target

Coord = tuple[int, int]
"""A slot ``(x, y)`` of the grid, or a switch of the switch grid."""
Link = tuple[Coord, Coord]
"""A directed link: (from switch, to switch)."""


def xy_path(a: Coord, b: Coord) -> tuple[Coord, ...]:
    """The switches from ``a`` to ``b`` along X first, then along Y."""
    (ax, ay), (bx, by) = a, b
    sx = 1 if bx >= ax else -1
    sy = 1 if by >= ay else -1
    return tuple([(x, ay) for x in range(ax, bx + sx, sx)]
                 + [(bx, y) for y in range(ay + sy, by + sy, sy)])  # fmt: skip


def yx_path(a: Coord, b: Coord) -> tuple[Coord, ...]:
    """The switches from ``a`` to ``b`` along Y first, then along X."""
    (ax, ay), (bx, by) = a, b
    sx = 1 if bx >= ax else -1
    sy = 1 if by >= ay else -1
    return tuple([(ax, y) for y in range(ay, by + sy, sy)]
                 + [(x, by) for x in range(ax + sx, bx + sx, sx)])  # fmt: skip


def links(hops: Sequence[Coord]) -> list[Link]:
    """The directed links a route passes, in order."""
    return [(hops[i], hops[i + 1]) for i in range(len(hops) - 1)]


def link_usage(routes: Sequence[Sequence[Coord]]) -> dict[Link, int]:
    """How many of ``routes`` pass each (directed) link."""
    usage: dict[Link, int] = {}
    for hops in routes:
        for link in links(hops):
            usage[link] = usage.get(link, 0) + 1
    return usage


class Router:
    """The links a section's streams use so far, on ``target``'s switch grid."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.usage: dict[Link, int] = {}

    def has_room(self, hops: Sequence[Coord]) -> bool:
        """Whether every link of ``hops`` carries fewer streams than its capacity."""
        cap, usage = self.target.link_capacity, self.usage
        return all(usage.get(link, 0) < cap for link in zip(hops, hops[1:], strict=False))

    def path(self, a: Coord, b: Coord) -> tuple[Coord, ...] | None:
        """A route from switch ``a`` to switch ``b`` over links with room left (X then Y, Y then
        X, the shortest detour), or None if there is none. Does not take it."""
        hops = xy_path(a, b)
        if self.has_room(hops):
            return hops
        if a[0] != b[0] and a[1] != b[1]:  # else Y then X is the same route
            hops = yx_path(a, b)
            if self.has_room(hops):
                return hops
        return self.detour(a, b)

    def detour(self, a: Coord, b: Coord) -> tuple[Coord, ...] | None:
        """The shortest route from ``a`` to ``b`` over links with room left (breadth first)."""
        cols, rows, cap = self.target.cols, self.target.rows, self.target.link_capacity
        usage = self.usage
        parent: dict[Coord, Coord] = {a: a}
        queue = deque([a])
        while queue:
            p = queue.popleft()
            if p == b:
                hops = [b]
                while hops[-1] != a:
                    hops.append(parent[hops[-1]])
                return tuple(reversed(hops))
            x, y = p
            for q in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if q in parent or not (0 <= q[0] <= cols and 0 <= q[1] <= rows):
                    continue
                if usage.get((p, q), 0) >= cap:
                    continue
                parent[q] = p
                queue.append(q)
        return None

    def take(self, hops: Sequence[Coord]) -> Link | None:
        """Count one stream on every link of ``hops`` (once a link, should it pass one twice);
        the first link that it takes over capacity, or None."""
        over = None
        cap, usage = self.target.link_capacity, self.usage
        for link in dict.fromkeys(zip(hops, hops[1:], strict=False)):
            n = usage[link] = usage.get(link, 0) + 1
            if over is None and n > cap:
                over = link
        return over
