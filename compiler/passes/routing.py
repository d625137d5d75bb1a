"""Routing streams through a target's switch network within the links' capacity: no IR.

Switches sit on a ``(cols + 1) x (rows + 1)`` grid; a link is one direction of the wire between
two adjacent switches and carries at most ``target.link_capacity`` streams (as
``runtime.pef.validate`` checks). A route is the tuple of switches a stream passes, each
adjacent to the next.

A stream into a register port (one word, read once when the section starts) travels the
scalar network instead, on a target that has one (``runtime.machine.rules.on_scalar_network``):
its links are the same switches' but apart, and carry the values of at most
``target.scalar_link_capacity`` PMUs each, the routes of one PMU's registers sharing a track
(``rules.link_loads``, the validator's count). Such a stream is routed with ``scalar`` set to
the PMU it carries the value of.

A ``Router`` holds the links one section's streams use so far, on both networks.
``Router.path`` finds a point-to-point route with room left: X then Y, else Y then X, else the
shortest detour over the links with room left (breadth first); ``Router.take`` counts a route on
its links. A stream that moves bytes (its ``weight``, the bytes the performance model counts on
its route) takes whichever of X-then-Y and Y-then-X has the less busy busiest link, counting
the bytes of the streams routed before it: the model shares a link's bandwidth among its
streams, so two heavy streams sharing a link when another route of the same length would spare
it set the section's time (HF GPT-2's backward on sn10: two 2.9 MB streams into the copies of
one matmul down one column, 109k cycles of link time; 71k apart).

With ``spread`` (the annealed placer's first try), a heavy stream whose better of the two
routes above passes a link that already moves as many bytes as it would may detour up to
``DETOUR_HOPS`` hops round it, within a row or column of the box of its ends
(``Router.quieter``); the placer routes again without that if it leaves a stream no path (the
detours take room other streams need). HF GPT-2's backward on sn10: four 1.1 MB streams from
one buffer's PMUs down one column, 71k -> 62k cycles of link time, no longer the section's
bound. Between switches of one row or column there is no second route of the same length; at
first only those detoured. Every heavy stream may since: in MLP b256's backward on sn10, three
32 kB streams from the saved activation's PMUs into copies of one matmul, along a row and then
down the copies' column, shared its links (1,792 cycles); arriving by other columns, 1,024.

Both placers use it: ``placement`` for the annealed sections, ``parallel_layout`` for
a parallel unit's (whose multicast streams, one path through many switches, it takes as they
are).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from itertools import repeat

from compiler.targets import Target

Coord = tuple[int, int]
"""A slot ``(x, y)`` of the grid, or a switch of the switch grid."""
Link = tuple[Coord, Coord]
"""A directed link: (from switch, to switch)."""

_HOPS_BITS = 16
_HOPS_MASK = (1 << _HOPS_BITS) - 1
"""``Router.quieter``'s labels: the busiest link's bytes, then the hops in the low bits."""

DETOUR_HOPS = 2
"""How many hops longer than the straight line a heavy stream's route may be to go round a busy
link, within one row or column of the box of its ends (``Router.quieter``)."""


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


_DIRECTIONS = {(1, 0): 0, (-1, 0): 1, (0, 1): 2, (0, -1): 3}
"""A link's step (to switch minus from switch): its index in ``Router._open``."""


class Router:
    """The links a section's streams use so far, on ``target``'s switch grid: the vector
    network's (streams a link) and the scalar network's (the PMUs whose values a link carries)."""

    def __init__(self, target: Target, *, spread: bool = False) -> None:
        self.target = target
        self.spread = spread
        """Whether a heavy stream may detour round a busy link (``path``)."""
        self.usage: dict[Link, int] = {}
        self.scalars: dict[Link, set[int]] = {}
        self.bytes: dict[Link, int] = {}
        """The bytes the vector streams taken so far move over each link in one run (their
        ``weight``s): the performance model's link rule shares a link's bandwidth among them."""
        switches = (target.cols + 1) * (target.rows + 1)
        self._moved_at = [0] * (4 * switches)
        """``bytes`` by link number (``4 * switch + direction``, see ``_DIRECTIONS``), kept
        with ``spread`` only (``quieter`` reads it)."""
        self._full_at = bytearray(4 * switches)
        """``full`` by link number."""
        self.full: set[Link] = set()
        """The vector links with no room left (``usage`` at ``link_capacity``): a route has
        room when it passes none of them, one set look-up a link."""
        self._closed = target.link_capacity <= 0
        """No vector link has room, taken or not (a target file's capacity 0)."""
        self._height = target.rows + 1
        self._open = _open_links(target.cols, target.rows) if not self._closed else [0] * 4
        """The vector links with room left as bit sets over switch numbers (bit ``x * (rows +
        1) + y``), one a direction (+x, -x, +y, -y): a switch's bit is set when its link that
        way exists and is not ``full`` (``detour`` searches with them)."""
        self.spared = 0
        """How many routes ``path`` has given so far that ``spread`` alone made it choose (a
        ``quieter`` detour): while 0, a router without ``spread`` would have routed the same."""

    def on_scalar(self, scalar: int | None) -> bool:
        """Whether a stream carrying PMU ``scalar``'s register value (None: a vector stream)
        goes on the scalar network: the target has one."""
        return scalar is not None and self.target.scalar_link_capacity > 0

    def room(self, link: Link, scalar: int | None = None) -> bool:
        """Whether ``link`` has room for one more stream (carrying PMU ``scalar``'s register
        value, or None)."""
        if self.on_scalar(scalar):
            held = self.scalars.get(link, ())
            return scalar in held or len(held) < self.target.scalar_link_capacity
        return not self._closed and link not in self.full

    def has_room(self, hops: Sequence[Coord], scalar: int | None = None) -> bool:
        """Whether every link of ``hops`` has room for the stream."""
        if self.on_scalar(scalar):  # ``room`` of every link, inline (the scalar routes' most)
            capacity, held = self.target.scalar_link_capacity, self.scalars.get
            for link in zip(hops, hops[1:], strict=False):
                pmus = held(link)
                if pmus is not None and len(pmus) >= capacity and scalar not in pmus:
                    return False
            return True
        if self._closed:
            return len(hops) < 2
        return self.full.isdisjoint(zip(hops, hops[1:], strict=False))

    def busiest(self, hops: Sequence[Coord]) -> int:
        """The most bytes a link of ``hops`` moves so far."""
        return max(map(self.bytes.get, zip(hops, hops[1:], strict=False), repeat(0)), default=0)

    def path(
        self, a: Coord, b: Coord, scalar: int | None = None, weight: int = 0
    ) -> tuple[Coord, ...] | None:
        """A route from switch ``a`` to switch ``b`` over links with room left (X then Y, Y then
        X, the shortest detour), or None if there is none. Does not take it. A stream that moves
        bytes (``weight`` > 0) takes Y then X instead of X then Y when that route's busiest
        link moves fewer bytes so far: two heavy streams do not share a link that another
        route of the same length would spare them."""
        first = xy_path(a, b)
        light = weight <= 0 or scalar is not None  # the first route with room will do
        if light and self.has_room(first, scalar):
            return first
        routes = [first]
        if a[0] != b[0] and a[1] != b[1]:  # else Y then X is the same route
            routes.append(yx_path(a, b))
        options = [h for h in routes if self.has_room(h, scalar)]
        if not options:
            return self.detour(a, b, scalar)
        if light:
            return options[0]
        best = min(options, key=self.busiest)  # the first (X then Y) on a tie
        busiest = self.busiest(best)
        if self.spread and busiest >= weight:
            # A link on the better route already moves as much as the stream would (sharing
            # it at least doubles the stream's time there): a detour may spare the link.
            quieter = self.quieter(a, b, len(best) - 1 + DETOUR_HOPS, busiest)
            if quieter is not None:
                self.spared += 1
                return quieter
        return best

    def quieter(self, a: Coord, b: Coord, limit: int, below: int) -> tuple[Coord, ...] | None:
        """The route from ``a`` to ``b`` of at most ``limit`` hops, over vector links with room
        left within one row or column of the box of ``a`` and ``b``, whose busiest link moves
        the fewest bytes (then the fewest hops), fewer than ``below``; None if there is none.
        Dijkstra on the pair (busiest link so far, hops), which only grows along a route, one
        int ``busiest << 16 | hops``, over switch numbers (``x * (rows + 1) + y``: ties go to
        the lower ``(x, y)``); a link moving ``below`` bytes or more is never taken, so the
        search stays among the quieter links (the routes are those of the search over all
        links, test_routing). A switch keeps its best pair only, so within ``limit`` a route
        through it on more hops but fewer bytes than that pair's is not seen: the quietest
        route then may be missed, a busier one taken. About 29,000 searches in a compile of
        GPT-2 small at two blocks."""
        height = self._height
        lo_x, hi_x = max(0, min(a[0], b[0]) - 1), min(self.target.cols, max(a[0], b[0]) + 1)
        lo_y, hi_y = max(0, min(a[1], b[1]) - 1), min(self.target.rows, max(a[1], b[1]) + 1)
        start, goal = a[0] * height + a[1], b[0] * height + b[1]
        best: dict[int, int] = {start: 0}
        parent: dict[int, int] = {start: start}
        heap = [(0, start)]
        moved, full, closed = self._moved_at, self._full_at, self._closed
        while heap:
            label, p = heapq.heappop(heap)
            if p == goal:
                hops = [goal]
                while hops[-1] != start:
                    hops.append(parent[hops[-1]])
                return tuple(divmod(h, height) for h in reversed(hops))
            if best[p] < label or closed:
                continue
            busy, n = label >> _HOPS_BITS, (label & _HOPS_MASK) + 1
            if n > limit:
                continue
            x, y = divmod(p, height)
            at = 4 * p
            for d, q, inside in (
                (0, p + height, x < hi_x),
                (1, p - height, x > lo_x),
                (2, p + 1, y < hi_y),
                (3, p - 1, y > lo_y),
            ):
                if not inside or full[at + d]:
                    continue
                link = moved[at + d]
                step = (busy if busy >= link else link) << _HOPS_BITS | n
                if link >= below or best.get(q, step + 1) <= step:  # ``busy`` is below
                    continue
                best[q] = step
                parent[q] = p
                heapq.heappush(heap, (step, q))
        return None

    def detour(self, a: Coord, b: Coord, scalar: int | None = None) -> tuple[Coord, ...] | None:
        """The shortest route from ``a`` to ``b`` over links with room left (breadth first,
        neighbours in the order +x, -x, +y, -y: the first to reach a switch is its parent)."""
        if self.on_scalar(scalar):
            return self._detour_scalar(a, b, scalar)
        # The search's answer is the route with the fewest hops whose moves, compared from
        # ``a`` in the order +x, -x, +y, -y, come first (a switch's parent is the first switch
        # of the level before, in queue order, with a link to it; the queue order of a level is
        # that order of the routes to its switches). Found with bit sets of switches instead of
        # a queue: the levels from ``a`` until ``b``'s, the switches of each level on a
        # shortest route to ``b`` (back from ``b``), then from ``a`` the first move that stays
        # on one. A GPT-2 compile makes about 5,600 searches of several hundred switches.
        height = self._height
        px, mx, py, my = self._open
        start, goal = a[0] * height + a[1], b[0] * height + b[1]
        levels = [1 << start]
        seen = frontier = levels[0]
        while not (frontier >> goal) & 1:
            frontier = (
                (frontier & px) << height
                | (frontier & mx) >> height
                | (frontier & py) << 1
                | (frontier & my) >> 1
            ) & ~seen
            if not frontier:
                return None
            seen |= frontier
            levels.append(frontier)
        on_route = frontier = 1 << goal
        for k in range(len(levels) - 2, -1, -1):  # level k's switches with a link into k + 1's
            frontier = levels[k] & (
                px & frontier >> height
                | mx & frontier << height
                | py & frontier >> 1
                | my & frontier << 1
            )
            levels[k + 1] = on_route
            on_route = frontier
        hops = [a]
        p = start
        for k in range(1, len(levels)):
            ahead = levels[k]
            for step, links_open in ((height, px), (-height, mx), (1, py), (-1, my)):
                if (links_open >> p) & 1 and (ahead >> (p + step)) & 1:
                    p += step
                    break
            hops.append(divmod(p, height))
        return tuple(hops)

    def _detour_scalar(self, a: Coord, b: Coord, scalar: int | None) -> tuple[Coord, ...] | None:
        """``detour`` on the scalar network (room depends on the PMU the stream carries)."""
        cols, rows = self.target.cols, self.target.rows
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
                if not self.room((p, q), scalar):
                    continue
                parent[q] = p
                queue.append(q)
        return None

    def take(
        self, hops: Sequence[Coord], scalar: int | None = None, weight: int = 0
    ) -> Link | None:
        """Count one stream (carrying PMU ``scalar``'s register value, or None; moving
        ``weight`` bytes) on every link of ``hops`` (once a link, should it pass one twice); the
        first link that it takes over capacity, or None."""
        over = None
        passed = dict.fromkeys(zip(hops, hops[1:], strict=False))
        if self.on_scalar(scalar):
            assert scalar is not None
            for link in passed:
                if over is None and not self.room(link, scalar):
                    over = link
                self.scalars.setdefault(link, set()).add(scalar)
            return over
        capacity, usage, moved, full = self.target.link_capacity, self.usage, self.bytes, self.full
        for link in passed:
            used = usage.get(link, 0)
            usage[link] = used + 1
            if weight:  # ``bytes`` is read with 0 for a link it lacks
                moved[link] = moved.get(link, 0) + weight
            if used + 1 >= capacity:
                if over is None and used >= capacity:
                    over = link
                if link not in full:
                    self._fill(link)
        if weight and self.spread:  # what ``quieter`` reads
            for link in passed:
                number = self._link_number(link)
                if number is not None:
                    self._moved_at[number] += weight
        return over

    def _link_number(self, link: Link) -> int | None:
        """``4 * switch + direction`` of a link between adjacent switches of the grid (None: not
        one, which no search passes)."""
        (px, py), (qx, qy) = link
        direction = _DIRECTIONS.get((qx - px, qy - py))
        if direction is None or not (0 <= px <= self.target.cols and 0 <= py <= self.target.rows):
            return None
        return 4 * (px * self._height + py) + direction

    def _fill(self, link: Link) -> None:
        """Mark the vector ``link`` as having no room left (``full``, ``_full_at``, ``_open``)."""
        self.full.add(link)
        number = self._link_number(link)
        if number is not None:
            self._full_at[number] = 1
            self._open[number % 4] &= ~(1 << (number // 4))


def _open_links(cols: int, rows: int) -> list[int]:
    """``Router._open`` with every link open: per direction (+x, -x, +y, -y), the switches of
    the ``(cols + 1) x (rows + 1)`` grid that have a neighbour that way."""
    height = rows + 1
    column = (1 << height) - 1  # the switches of one column, (x, 0) to (x, rows)
    every = sum(column << (x * height) for x in range(cols + 1))
    return [
        every & ~(column << (cols * height)),  # +x: not the last column
        every & ~column,  # -x: not the first
        every & ~sum(1 << (x * height + rows) for x in range(cols + 1)),  # +y: not the top
        every & ~sum(1 << (x * height) for x in range(cols + 1)),  # -y: not the bottom
    ]
