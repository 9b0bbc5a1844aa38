"""The end-to-end test hub with a short ``BYE_WAIT``, so that a test of a connection cut off
for reading nothing waits 2 s rather than 10 (``ladder serve tests.e2e.cut_app:hub``)."""

from __future__ import annotations

from ladder.server import cutoff
from tests.support.apps import hub

BYE_WAIT = 2.0
cutoff.BYE_WAIT = BYE_WAIT

__all__ = ["BYE_WAIT", "hub"]
