"""Literal "needles" of a regex: strings one of which occurs in every match, read from the regex itself.

The classifier's tables are many regexes tried in order over the same text, most of which do not
match; the regex engine tries each alternative at each position to find that out. ``str.__contains__``
on a handful of literals is several times cheaper, so a row whose needles are all absent is skipped
without running its regex (``may_match``). The needles are a necessary condition only, derived from the
parsed regex, so skipping never changes a result.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

_sre_parser: Any
_sre: Any
try:  # the regex parser's own modules (Python 3.11+); without them no row is prefiltered
    _sre_parser = importlib.import_module("re._parser")
    _sre = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover
    _sre_parser = _sre = None


def needles(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """Literal strings one of which occurs in every match of ``pattern``; ``None`` when no such set
    is known (then the regex is always run).

    Read from the parsed regex: a sequence needs its longest literal run or one of its mandatory
    groups' needle sets (the smallest set is kept), an alternation needs one of its branches'. Anything
    the reader is unsure of (scoped flags, optional parts, classes) contributes nothing, so the set
    is only ever a necessary condition: skipping a row whose needles are all absent changes no result.
    """
    if pattern.flags & re.IGNORECASE or _sre_parser is None:
        return None
    try:
        found = _sequence_needles(list(_sre_parser.parse(pattern.pattern, pattern.flags)))
    except Exception:  # a construct the reader does not know: no prefilter for this row
        return None
    if not found:
        return None
    # a needle containing another is redundant: wherever it occurs, the shorter one does too
    kept = [n for n in found if not any(other != n and other in n for other in found)]
    return tuple(sorted(kept, key=lambda n: (len(n), n)))


def _sequence_needles(items: list[tuple[Any, Any]]) -> frozenset[str] | None:
    candidates: list[frozenset[str]] = []
    run: list[str] = []

    def end_run() -> None:
        if run:
            candidates.append(frozenset({"".join(run)}))
            run.clear()

    for op, av in items:
        if op is _sre.LITERAL:
            run.append(chr(av))
            continue
        end_run()
        found: frozenset[str] | None = None
        if op is _sre.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if add_flags or del_flags:
                return None
            found = _sequence_needles(list(sub))
        elif op is _sre.BRANCH:
            union: set[str] = set()
            for branch in av[1]:
                branch_needles = _sequence_needles(list(branch))
                if branch_needles is None:
                    union = set()
                    break
                union |= branch_needles
            found = frozenset(union) if union else None
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) and av[0] >= 1:
            found = _sequence_needles(list(av[2]))
        if found is not None:
            candidates.append(found)
    end_run()
    usable = [c for c in candidates if c and all(len(n) >= 2 for n in c)]
    if not usable:
        return None
    # fewest needles, but not at the price of a two-letter one (``re`` occurs in most texts)
    return min(usable, key=lambda c: (min(len(n) for n in c) < 3, len(c), -min(len(n) for n in c)))


def may_match(text: str, found: tuple[str, ...] | None) -> bool:
    """False only when ``text`` holds none of ``found`` (so the regex they come from cannot match)."""
    if found is None:
        return True
    for needle in found:  # a loop, not ``any(...)``: no generator on this hot path
        if needle in text:
            break
    else:
        return False
    return True
