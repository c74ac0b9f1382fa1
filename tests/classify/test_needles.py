"""The needles of every table row are in every text its regex matches (so skipping is safe)."""

from __future__ import annotations

import random
import re

import pytest

from nimbus_api.classify import bounce_patterns as bp
from nimbus_api.classify import reasons
from nimbus_api.classify.needles import may_match, needles

ROWS: list[tuple[str, re.Pattern[str], tuple[str, ...] | None]] = [
    *((f"phrase:{r.name}", r.pattern, n) for r, n in zip(reasons.PHRASE_TABLE, reasons._PHRASE_NEEDLES, strict=True)),
    ("command", reasons.COMMAND_RE, reasons._COMMAND_NEEDLES),
    *(
        (f"{table}:{row.name}", row.regex, row.needles)
        for table, rows in (
            ("sender", bp.SENDER_PATTERNS),
            ("subject", bp.SUBJECT_PATTERNS),
            ("body", bp.BODY_PATTERNS),
            ("original", bp.ORIGINAL_MARKERS),
            ("recipient", bp.RECIPIENT_PATTERNS),
            ("vendor", bp.VENDOR_REASONS),
        )
        for row in rows
    ),
]


def test_rows_carry_the_needles_of_their_regex() -> None:
    for name, regex, found in ROWS:
        assert found == needles(regex), name


@pytest.mark.parametrize(("name", "regex", "found"), ROWS, ids=[r[0] for r in ROWS])
def test_every_match_contains_a_needle(name: str, regex: re.Pattern[str], found: tuple[str, ...] | None) -> None:
    if found is None:
        return
    pieces = [p for p in re.split(r"[\\()|?*+{}\[\]^$]+", regex.pattern) if p]
    pieces += [*found, " ", "\n", "-", ".", ":", "<", ">", "@", "a@b.example", "x"]
    rnd = random.Random(name)
    for _ in range(300):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randrange(1, 10)))
        if regex.search(text):
            assert may_match(text, found), (name, text)
        cut = text[: rnd.randrange(len(text) + 1)]
        if regex.search(cut):
            assert may_match(cut, found), (name, cut)
