"""The fuzzed hub, run in-process on an event loop of its own, and the tally of everything tried.

Hypothesis drives plain (synchronous) test functions; each example runs its batch of inputs on
the fuzz loop with ``run_until_complete``. Between examples the hub's clock jumps past the
session TTL and the hub ticks, so every session an example opened is expired and forgotten:
the hub stays small however many inputs go through.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

from ladder import Ladder
from ladder.server.hub import internals
from tests.fuzz.harness import Clock, Driver, ErrorLog, Tally, make_hub

T = TypeVar("T")
TALLY = Tally()
"""Every fuzz input of the run, per endpoint (for the report)."""
TARGET = 100_000
"""Generated inputs per transport (and for the decoders) across the suite."""


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings for the fuzz tests: reproducible (derandomized, no example database),
    no deadline (a batch of inputs takes what it takes), big examples allowed."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


@dataclass
class Fuzz:
    loop: asyncio.AbstractEventLoop
    clock: Clock
    hub: Ladder
    driver: Driver
    tally: Tally

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one example's batch, then expire every session it left behind."""
        try:
            return self.loop.run_until_complete(coro)
        finally:
            self.clock.now += 3600
            self.loop.run_until_complete(internals(self.hub).tick(self.clock()))


@pytest.fixture(scope="module")
def fuzz() -> Iterator[Fuzz]:
    loop = asyncio.new_event_loop()
    clock = Clock()
    hub = make_hub(clock)
    errors = ErrorLog()
    logger = logging.getLogger("ladder")
    logger.addHandler(errors)
    quiet = logger.level
    logger.setLevel(logging.ERROR)  # refusals are logged at INFO: millions of lines otherwise
    try:
        loop.run_until_complete(hub.start())
        yield Fuzz(loop, clock, hub, Driver(hub, TALLY, errors), TALLY)
        loop.run_until_complete(hub.stop())
    finally:
        logger.removeHandler(errors)
        logger.setLevel(quiet)
        loop.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY.inputs:
        return
    terminalreporter.section("fuzz/: generated inputs, answers, crashes")
    for endpoint, count in sorted(TALLY.inputs.items()):
        answers = TALLY.answers.get(endpoint, Counter())
        shown = ", ".join(f"{label} {n}" for label, n in sorted(answers.items(), key=lambda kv: -kv[1]))
        terminalreporter.write_line(f"{endpoint:>9}: {count:>7} inputs; {shown}")
    terminalreporter.write_line(f"crashes: {len(TALLY.crashes)}")
    for crash in TALLY.crashes[:10]:
        terminalreporter.write_line(f"    {crash[:500]}")
