"""How logs and reasons name a session: the node that made it, and its own part."""

from __future__ import annotations

from ladder.protocol.sids import label, node_of


def test_a_label_keeps_the_node_and_tells_its_sessions_apart() -> None:
    # The first 8 characters were the node's id: every session of a node read the same.
    one, two = "42a6db00.Xk3v9Pq1abcdefghijkl", "42a6db00.Zz9QwErTabcdefghijkl"
    assert label(one) == "42a6db00.Xk3v9Pq1"
    assert label(two) == "42a6db00.Zz9QwErT"
    assert label(one) != label(two)
    assert node_of(one) == "42a6db00"


def test_an_id_without_a_node_part_is_labelled_by_its_first_8_characters() -> None:
    assert label("Xk3v9Pq1abcdefghijkl") == "Xk3v9Pq1"
    assert node_of("Xk3v9Pq1abcdefghijkl") is None
    assert node_of(".abc") is None  # (no node named there)
    assert label("short") == "short"
