"""An app whose ``--workers`` workers fail before they serve, ``LADDER_TEST_FAIL_AFTER``
seconds after they started (the parent, which only supervises, imports it fine)."""

from __future__ import annotations

import os
import time

from ladder.server.workers import worker_socket_spec
from tests.support.apps import hub

__all__ = ["hub"]

if worker_socket_spec() is not None:
    time.sleep(float(os.environ.get("LADDER_TEST_FAIL_AFTER", "0")))  # a slow startup, then a failure
    raise SystemExit("this worker fails at startup")
