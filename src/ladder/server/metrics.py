"""Prometheus metrics at ``<mount>/metrics``.

The hot paths only bump plain integers in :class:`Counters` (no locks, no label lookups);
a custom collector turns them into Prometheus families when scraped. Gauges such as
connections per rung are computed at scrape time from the session table.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sized
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .tally import Tally

if TYPE_CHECKING:
    from .sessions import SessionTable

CONTENT_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"

REASONS: Final = frozenset({"refused", "timeout", "buffered", "cut", "heartbeat", "probe", "lost", "error"})
"""What a client may say about why it changed rung (hello field ``why``); anything else is ``error``."""


class Counters:
    """Plain counters the hub bumps as things happen (``defaultdict(int)``, not ``Counter``:
    ``Counter`` defines ``__delitem__`` in Python, which sends every ``+= 1`` through a
    looked-up ``__setitem__``, three times the cost; per message, a :class:`Tally`)."""

    __slots__ = ("connects", "errors", "frames_in", "frames_out", "rung_changes")

    def __init__(self) -> None:
        self.frames_in: dict[str, Tally] = {}
        """Client messages accepted, by transport (see :meth:`tally_in`)."""
        self.frames_out: dict[str, Tally] = {}
        """Frames written to clients, by transport (see :meth:`tally_out`)."""
        self.connects: defaultdict[tuple[str, str], int] = defaultdict(int)
        """Hellos by (transport, outcome: accepted / refused)."""
        self.errors: defaultdict[str, int] = defaultdict(int)
        """Refusals and error replies, by code."""
        self.rung_changes: defaultdict[tuple[str, str, str, str], int] = defaultdict(int)
        """Sessions moving between rungs: (from, to, direction down/up, reason)."""

    def tally_in(self, transport: str) -> Tally:
        """The count of client messages accepted on ``transport``."""
        return _tally(self.frames_in, transport)

    def tally_out(self, transport: str) -> Tally:
        """The count of frames written on ``transport`` (a link keeps its own)."""
        return _tally(self.frames_out, transport)


def _tally(tallies: dict[str, Tally], key: str) -> Tally:
    tally = tallies.get(key)
    if tally is None:
        tally = tallies[key] = Tally()
    return tally


class Observed:
    """What the metrics read at scrape time."""

    __slots__ = ("channels", "cluster", "counters", "healthy", "sessions", "shards", "transports")

    def __init__(
        self,
        counters: Counters,
        *,
        transports: tuple[str, ...],
        sessions: SessionTable,
        channels: Sized,
        healthy: Callable[[], bool],
        cluster: dict[str, int],
        shards: Callable[[], list[tuple[str, bool]]] = list,
    ) -> None:
        self.counters = counters
        self.transports = transports
        self.sessions = sessions
        self.channels = channels
        self.healthy = healthy
        self.cluster = cluster
        self.shards = shards
        """(shard, healthy) for each shard of an engine spread over several Redis servers."""


class _Collector(Collector):
    def __init__(self, observed: Observed) -> None:
        self.observed = observed

    def collect(self) -> Iterator[Metric]:
        observed = self.observed
        counters = observed.counters
        live = GaugeMetricFamily("ladder_connections", "Transports attached right now", labels=["transport"])
        by_transport: Counter[str] = Counter()
        for session in observed.sessions:
            for att in session.state.attachments:
                by_transport[att.transport] += 1
        for transport in observed.transports:
            live.add_metric([transport], by_transport[transport])
        yield live
        yield GaugeMetricFamily(
            "ladder_sessions", "Sessions held by this process", value=len(observed.sessions)
        )
        yield GaugeMetricFamily(
            "ladder_channels", "Channels with local subscribers", value=len(observed.channels)
        )
        yield GaugeMetricFamily(
            "ladder_engine_healthy", "1 while the engine is reachable", value=1 if observed.healthy() else 0
        )
        shards = observed.shards()
        if shards:
            per_shard = GaugeMetricFamily(
                "ladder_engine_shard_healthy", "1 while the engine's shard answers", labels=["shard"]
            )
            for shard, ok in shards:
                per_shard.add_metric([shard], 1 if ok else 0)
            yield per_shard
        for name, doc, counter in (
            ("ladder_messages_in", "Client messages accepted", counters.frames_in),
            ("ladder_messages_out", "Frames written to clients", counters.frames_out),
        ):
            family = CounterMetricFamily(name, doc, labels=["transport"])
            for transport, tally in sorted(counter.items()):
                family.add_metric([transport], tally.n)
            yield family
        connects = CounterMetricFamily(
            "ladder_connects", "Transport openings (hellos)", labels=["transport", "outcome"]
        )
        for (transport, outcome), value in sorted(counters.connects.items()):
            connects.add_metric([transport, outcome], value)
        yield connects
        errors = CounterMetricFamily("ladder_errors", "Refusals and error replies", labels=["code"])
        for code, value in sorted(counters.errors.items()):
            errors.add_metric([code], value)
        yield errors
        changes = CounterMetricFamily(
            "ladder_rung_changes",
            "Sessions moving between rungs",
            labels=["from", "to", "direction", "reason"],
        )
        for labels, value in sorted(counters.rung_changes.items()):
            changes.add_metric(list(labels), value)
        yield changes
        cluster = CounterMetricFamily("ladder_cluster", "Session routing between processes", labels=["kind"])
        for kind, value in sorted(observed.cluster.items()):
            cluster.add_metric([kind], value)
        yield cluster


class Metrics:
    """A hub's own registry (several hubs in one process do not mix their numbers)."""

    def __init__(self, observed: Observed) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(observed))
        self.engine_latency = Histogram(
            "ladder_engine_seconds",
            "Engine round trips (publish)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
