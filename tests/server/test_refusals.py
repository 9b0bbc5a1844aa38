"""Refusals made before a session are logged with the damping of a session's, per address."""

from __future__ import annotations

import logging

import pytest

from ladder import LadderError
from ladder.server.metrics import Counters
from ladder.server.refusals import ADDRESSES_KEPT, LOG_EVERY, Refusals
from tests.server.harness import Clock

UNSUPPORTED = LadderError("unsupported_version", "protocol version 99 is not supported")


class Said:
    """The lines logged on ``ladder`` so far."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="ladder")
        self.caplog = caplog

    @property
    def lines(self) -> list[str]:
        return self.caplog.messages


@pytest.fixture
def said(caplog: pytest.LogCaptureFixture) -> Said:
    return Said(caplog)


def test_a_flood_from_one_address_is_logged_once_per_interval_and_counted_in_full(said: Said) -> None:
    """1,600 quick requests from one address had 1,600 lines; the port differs from one
    connection to the next, the address is the same."""
    counters, clock = Counters(), Clock()
    refused = Refusals(counters, None, clock)
    for port in range(1000, 1005):
        refused("poll", UNSUPPORTED, client=f"10.0.0.1:{port}")
    refused("poll", UNSUPPORTED, client="10.0.0.2:7")  # another address: its own line
    clock.now += LOG_EVERY
    refused("send", LadderError("rate_limited", "too many requests"), client="10.0.0.1:1005")
    assert said.lines == [
        "refused on poll (10.0.0.1:1000): unsupported_version: protocol version 99 is not supported",
        "refused on poll (10.0.0.2:7): unsupported_version: protocol version 99 is not supported",
        "refused on send (10.0.0.1:1005): rate_limited: too many requests (and 4 more not logged)",
    ]
    assert counters.errors == {"unsupported_version": 6, "rate_limited": 1}


def test_behind_a_trusted_proxy_the_client_address_is_the_key(said: Said) -> None:
    refused = Refusals(Counters(), None, Clock())
    refused("poll", UNSUPPORTED, client="198.51.100.7 via 10.0.0.2:51234")
    refused("poll", UNSUPPORTED, client="198.51.100.7 via 10.0.0.3:40000")  # damped: same client
    refused("poll", UNSUPPORTED, client="198.51.100.8 via 10.0.0.2:51234")  # another client
    assert [line.split(")")[0] for line in said.lines] == [
        "refused on poll (198.51.100.7 via 10.0.0.2:51234",
        "refused on poll (198.51.100.8 via 10.0.0.2:51234",
    ]


def test_only_the_addresses_refused_most_recently_are_remembered(said: Said) -> None:
    """Bounded memory: past ADDRESSES_KEPT addresses, the least recently refused is forgotten
    (its next refusal is logged at once, as a first one)."""
    refused = Refusals(Counters(), None, Clock())
    for n in range(ADDRESSES_KEPT + 1):
        refused("poll", UNSUPPORTED, client=f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}:1")
    assert len(said.lines) == ADDRESSES_KEPT + 1
    refused("poll", UNSUPPORTED, client="10.0.0.1:2")  # remembered: damped
    refused("poll", UNSUPPORTED, client="10.0.0.0:2")  # forgotten: logged
    assert len(said.lines) == ADDRESSES_KEPT + 2 and said.lines[-1].startswith("refused on poll (10.0.0.0:2)")


def test_a_refused_origin_s_warning_names_the_host_the_request_made_this_server(said: Said) -> None:
    """A proxy that does not pass the page's Host on (nginx without ``proxy_set_header Host``)
    has the app's own page refused: the warning said only to add the page's origin to
    ``allowed_origins``, not what the server took itself for."""
    refusals = Refusals(Counters(), None, Clock())
    refused = LadderError("origin_not_allowed", "origin 'https://app.example' is not allowed")
    refusals("poll", refused, client="10.0.0.1:5000", origin="https://app.example", own="http://127.0.0.1:8001")
    warning = [line for line in said.lines if line.startswith("refused origin")]
    assert len(warning) == 1 and "this request's Host made this server http://127.0.0.1:8001" in warning[0], warning
    assert "proxy_set_header Host $host" in warning[0] and "allowed_origins" in warning[0]
    listed = Refusals(Counters(), ("https://other.example",), Clock())
    listed("poll", refused, client="10.0.0.1:5000", origin="https://app.example", own="http://127.0.0.1:8001")
    assert "Host made this server" not in said.lines[-1], "a list is the app's own choice"
