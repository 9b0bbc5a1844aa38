"""Token buckets (``server/ratelimit.py``): a client that waits as it is told is paced, one
that keeps sending while told to wait is found out."""

from __future__ import annotations

import pytest

from ladder.server.ratelimit import Bucket, Rate, told

RATE = Rate(rate=20.0, burst=20.0)
PATIENCE = 3.0


def batch(bucket: Bucket, now: float, messages: range, rate: Rate = RATE) -> int | None:
    """Offer ``messages`` as one batch, as the throttle does: each takes a token until one is
    refused, and the rest of the batch is not read. Returns the refused one, if any."""
    for message in messages:
        if bucket.take(rate, now, message):
            bucket.read(messages.stop - message - 1, now)
            return message
    bucket.read(None, now)
    return None


def test_a_client_that_waits_as_told_is_never_taken_for_a_flood() -> None:
    """It writes its messages as fast as it is let: a hundred were on their way before it
    heard the first refusal; then, each time it is told to wait, it waits exactly that and
    writes the refused message again with the next one (one too many). Ten seconds of it:
    refused again and again, never abusive. (It was dropped after 3 s: every refusal
    counted, whether or not the client had waited.)"""
    bucket, now = Bucket(RATE, 0.0), 0.0
    for message in range(1, 121):  # the burst, and a hundred on the way
        wait = bucket.take(RATE, now, message)
        bucket.read(0 if wait else None, now)  # (one message a batch)
    now += told(wait)  # it heard, and waits as told, then writes 21 again
    applied, refused = 20, 0
    while now < 10.0:
        for message in (applied + 1, applied + 2):
            wait = bucket.take(RATE, now, message)
            if wait:
                bucket.read(0, now)  # (the last of its batch)
                refused += 1
                assert not bucket.abusive(RATE, now, PATIENCE), now
                now += told(wait)  # as the server tells it (throttle.py)
                break
            applied += 1
        else:
            bucket.read(None, now)
    assert refused > 100
    assert 20 + 20 * 10 - 2 <= applied <= 20 + 20 * 10 + 1  # the burst, then the rate


def test_a_client_that_waits_as_told_after_batches_in_flight_is_never_taken_for_a_flood() -> None:
    """A queue of 500 written in ten batches of 50 before it heard the first refusal (450
    frames sent while told to wait, nine of them refused, the rest not read); then, each
    time it is told to wait, it waits that and writes the refused message with the next
    one. Ten seconds of it: never abusive, and paced at the rate."""
    bucket, now = Bucket(RATE, 0.0), 0.0
    refusals = [batch(bucket, now + k * 0.001, range(1 + 50 * k, 51 + 50 * k)) for k in range(10)]
    assert refusals[0] == 21 and all(refusals)
    now = bucket.refused_until  # it heard about 21 and waits as told
    applied = 20
    while now < 10.0:
        refused = batch(bucket, now, range(applied + 1, applied + 3))
        assert not bucket.abusive(RATE, now, PATIENCE), now
        if refused is None:
            applied += 2
            continue
        applied = refused - 1
        now += told(bucket.told_until - now)
    assert 20 + 20 * 10 - 2 <= applied <= 20 + 20 * 10 + 1  # the burst, then the rate


@pytest.mark.parametrize("size", [1, 10, 50])
def test_a_flood_in_batches_is_abusive_its_patience_after_it_began(size: int) -> None:
    """Five times the default rate (100 a second, burst 200), ``size`` messages a batch,
    never writing a refused message again. In batches, each came after the wait it was
    told (the one refusal ends a batch), so none counted as sent while told to wait, nor
    did the frames of a batch not read: the flood was never ended."""
    rate = Rate(rate=100.0, burst=200.0)
    bucket, now, message, began, flagged_at = Bucket(rate, 0.0), 0.0, 1, None, None
    while flagged_at is None and now < 10.0:
        if batch(bucket, now, range(message, message + size), rate) and began is None:
            began = now
        if bucket.abusive(rate, now, PATIENCE):
            flagged_at = now
        message, now = message + size, now + size / 500
    assert began is not None and flagged_at is not None, (began, flagged_at)
    # (counted from the next batch on, 2 to 100 ms after the first refusal)
    assert PATIENCE <= flagged_at - began < PATIENCE + 0.15, (began, flagged_at)


@pytest.mark.parametrize("size", [1, 50])
def test_a_client_writing_the_refused_message_again_at_once_is_abusive_after_its_patience(size: int) -> None:
    """It writes the refused message again (alone, or with 49 after it) as soon as it hears,
    whatever it is told: most come before the wait is over, but in the end one comes after
    it, and now and then (the client was slow to hear) one comes after it with 49 more:
    each forgave everything it had sent before."""
    bucket, now, first, flagged_at = Bucket(RATE, 0.0), 0.0, 1, None
    while flagged_at is None and now < 10.0:
        refused = batch(bucket, now, range(first, first + size))
        if refused is not None and bucket.abusive(RATE, now, PATIENCE):
            flagged_at = now
        first = refused if refused is not None else first + size
        # (told to wait up to 50 ms, at 20 a second; alone, the refused message written
        # again after the wait is back as told, whatever came before)
        now += 0.06 if size > 1 and first % 5 == 0 else 0.007
    assert flagged_at is not None and PATIENCE <= flagged_at < PATIENCE + 0.5, flagged_at  # (its burst first)


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
