"""Coverage-guided fuzzing of Ladder's frame decoder with atheris (libFuzzer for Python).

One command, from the repository root (``pip install atheris`` into the venv first):

    .venv/bin/python -m tests.fuzz.atheris_frames -max_total_time=60

Any libFuzzer flag works (``-runs=1000000``, ``-jobs=2``, a corpus directory of your own).
Without one it uses ``$TMPDIR/ladder-atheris-frames``, seeded with a few valid frames and kept
between runs. It
stops at the first input that breaks the contract and writes it to ``crash-<sha1>``; replay
one with ``.venv/bin/python -m tests.fuzz.atheris_frames crash-<sha1>``.

The contract, for any bytes, through both codecs (as a POST body or a WebSocket message) and
as text (a WebSocket text message): ``decode_client_frames`` returns frames, those refused
carrying errors with documented codes, or raises ``LadderError`` with ``bad_frame`` or
``frame_too_large``; nothing else ever escapes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ladder.protocol.codec import JSON, MSGPACK
from ladder.protocol.errors import ERRORS, LadderError
from ladder.protocol.frames import Refused, decode_client_frames

CORPUS = Path(tempfile.gettempdir()) / "ladder-atheris-frames"
"""The corpus used when none is given (seeded with SEEDS)."""
LIMIT = 4096
"""A small frame limit, so that ``frame_too_large`` is within the fuzzer's reach."""
DECODE_CODES = {"bad_frame", "frame_too_large"}
FRAME_CODES = {"bad_frame", "unknown_frame", "unsupported_version"}
SEEDS = [
    b'{"t":"hello","v":1}',
    b'{"t":"hello","v":1,"sid":"s","rt":"r","ack":3}\n{"t":"sub","i":1,"ch":"room:a","ep":"e","off":4}',
    b'{"t":"pub","i":2,"ch":"open:x","d":{"$b":"AAEC"}}\n{"t":"ack","s":9}',
    b'{"t":"call","i":3,"ev":"echo","d":[1,2.5,"x",null,true]}',
    b'{"t":"history","i":4,"ch":"c","limit":10}\n{"t":"bye"}',
    b"\x82\xa1t\xa5hello\xa1v\x01",
    b"\x84\xa1t\xa4emit\xa1i\x05\xa2ev\xa4echo\xa1d\xc4\x03abc",
    b"\x83\xa1t\xa3sub\xa1i\x01\xa2ch\xa6room:a",
]


def check(data: bytes) -> None:
    """One input against the decoder's contract; raises AssertionError (a finding) otherwise."""
    for codec, payload in ((JSON, data), (MSGPACK, data), (JSON, data.decode("utf-8", "replace"))):
        try:
            frames = decode_client_frames(codec, payload, LIMIT)
        except LadderError as exc:
            if exc.code not in DECODE_CODES:
                raise AssertionError(f"{codec.name}: undocumented refusal {exc.code}: {exc}") from exc
            continue
        for error in (frame.error for frame in frames if isinstance(frame, Refused)):
            if error.code not in FRAME_CODES or error.code not in ERRORS:
                raise AssertionError(f"{codec.name}: undocumented frame error {error.code}")
        for frame in frames:
            inner = getattr(frame, "error", None)
            if inner is not None and inner.code not in ERRORS:
                raise AssertionError(f"{codec.name}: undocumented error in {frame!r}")


def main(argv: list[str]) -> None:
    import atheris  # noqa: PLC0415 - only this command needs it

    atheris.instrument_all()  # coverage of everything imported so far: ladder.protocol included
    args = list(argv)
    if not [arg for arg in args[1:] if not arg.startswith("-")]:  # no corpus, no input to replay
        corpus = CORPUS  # one place, reused: what a run finds, the next one starts from
        corpus.mkdir(exist_ok=True)
        for n, seed in enumerate(SEEDS):
            (corpus / f"seed-{n}").write_bytes(seed)
        args.append(str(corpus))
    atheris.Setup(args, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
