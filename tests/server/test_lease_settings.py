"""The ``node_lease`` setting: bounded like the other timings, settable until the hub starts
(``ladder serve --node-lease``), and inert with the memory engine (one process, no lease)."""

from __future__ import annotations

import math

import pytest

from ladder import ConfigurationError, Ladder
from ladder.server.hub import internals


@pytest.mark.parametrize("seconds", [0, 0.1, 3601, float("nan")])
def test_a_node_lease_that_cannot_work_is_refused_naming_it(seconds: float) -> None:
    with pytest.raises(ConfigurationError, match=r"^node_lease: "):
        Ladder(node_lease=seconds)
    hub = Ladder()
    with pytest.raises(ConfigurationError, match=r"^node_lease: "):
        hub.node_lease = seconds


def test_the_node_lease_reaches_the_node_and_the_memory_engine_keeps_none() -> None:
    hub = Ladder(node_lease=4.0)
    assert hub.node_lease == 4.0 and internals(hub).lease.seconds == 4.0
    hub.node_lease = 2.5  # (what ``ladder serve --node-lease 2.5`` does)
    lease = internals(hub).lease
    assert lease.seconds == 2.5 and internals(hub).cluster.lease is lease
    assert not lease.kept and lease.until == math.inf, "one process: nothing to fence"
    assert Ladder().node_lease == 10.0
