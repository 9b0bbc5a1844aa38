"""Token buckets (``server/ratelimit.py``): a client that waits as it is told is paced, one
that keeps sending while told to wait is found out."""

from __future__ import annotations

from ladder.server.ratelimit import Bucket, Rate, told

RATE = Rate(rate=20.0, burst=20.0)
PATIENCE = 3.0


def test_a_client_that_waits_as_told_is_never_taken_for_a_flood() -> None:
    """It writes its messages as fast as it is let: a hundred were on their way before it
    heard the first refusal; then, each time it is told to wait, it waits exactly that and
    writes the refused message again with the next one (one too many). Ten seconds of it:
    refused again and again, never abusive. (It was dropped after 3 s: every refusal
    counted, whether or not the client had waited.)"""
    bucket, now = Bucket(RATE, 0.0), 0.0
    for message in range(1, 121):  # the burst, and a hundred on the way
        wait = bucket.take(RATE, now, message)
    now += told(wait)  # it heard, and waits as told, then writes 21 again
    applied, refused = 20, 0
    while now < 10.0:
        for message in (applied + 1, applied + 2):
            wait = bucket.take(RATE, now, message)
            if wait:
                refused += 1
                assert not bucket.abusive(RATE, now, PATIENCE), now
                now += told(wait)  # as the server tells it (throttle.py)
                break
            applied += 1
    assert refused > 100
    assert 20 + 20 * 10 - 2 <= applied <= 20 + 20 * 10 + 1  # the burst, then the rate


def test_a_client_that_keeps_sending_while_told_to_wait_is_abusive_after_its_patience() -> None:
    bucket, now = Bucket(RATE, 0.0), 0.0
    for message in range(1, 21):
        assert bucket.take(RATE, now, message) == 0.0
    flagged_at, message = None, 20
    while flagged_at is None and now < 10.0:
        now, message = now + 0.001, message + 1  # a new message every millisecond, whatever it is told
        if bucket.take(RATE, now, message) and bucket.abusive(RATE, now, PATIENCE):
            flagged_at = now
    assert flagged_at is not None and PATIENCE <= flagged_at < PATIENCE + 0.1


def test_a_flood_that_stopped_long_enough_to_refill_is_forgiven() -> None:
    bucket, now = Bucket(RATE, 0.0), 0.0
    for _ in range(100):
        now += 0.001
        bucket.take(RATE, now)
    now += 2.0  # quiet: the bucket refills
    assert bucket.take(RATE, now) == 0.0
    for _ in range(20):
        now += 0.001
        bucket.take(RATE, now)
    assert not bucket.abusive(RATE, now + PATIENCE, PATIENCE)


def test_a_client_back_exactly_when_told_finds_its_token() -> None:
    """At three a second the next token is a third of a second away: told to the nearest
    millisecond (0.333) the client came back 0.3 ms early and was refused a second time."""
    rate = Rate(rate=3.0, burst=1.0)
    bucket = Bucket(rate, 0.0)
    assert bucket.take(rate, 0.0, 1) == 0.0
    wait = bucket.take(rate, 0.0, 2)
    assert told(wait) == 0.334
    assert bucket.take(rate, told(wait), 2) == 0.0
    assert told(0.05) == 0.05 and told(0.0001) == 0.001  # whole ms stay whole; never 0
