"""A faster stand-in for ``email.parser.BytesParser(policy=compat32).parsebytes``: the same tree.

The stdlib feed parser reads a message one line at a time through a generator and a line buffer that
checks every line against a stack of end-of-part predicates; on bounce-sized messages that machinery,
not the MIME logic, is most of the time the classifier spends. ``parse_bytes`` is the stdlib's own
algorithm (``email.feedparser.FeedParser._parsegen`` and ``_parse_headers``, Python 3.11), step for
step, over the message split into lines once: the same ``Message`` objects, headers, payloads,
preambles, epilogues and defects, for well-formed and malformed input alike (the tests compare the
two trees on the corpus and on thousands of mutated messages). Where it could differ, it does not
guess: any exception falls back to the stdlib parser.

What makes it faster: lines are cracked once (``StringIO(newline="").readlines()``, the stdlib's own
splitting), a body runs to its end in one tight loop that only looks closer at lines starting with
``--`` (a boundary) or, inside ``message/delivery-status``, at blank lines, and no generator is
resumed per line.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from email import errors
from email.message import Message
from io import StringIO

_POLICY = email.policy.compat32
_NLCRE_BOL = re.compile(r"(\r\n|\r|\n)")
_HEADER_RE = re.compile(r"^(From |[\041-\071\073-\176]*:|[\t ])")
_BOUNDARY_END_RE = re.compile("(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$")
#: ``; name=value`` or ``; name="value"``: the shape nearly every real Content-Type parameter has
_SIMPLE_PARAM_RE = re.compile(r';\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"([^"\\]*)"|([^;\s"]*))\s*(?=;|$)')


def simple_param(part: Message, name: str) -> str | None:
    """A Content-Type parameter as ``part.get_param(name)`` (unquoted) gives it, without parsing every
    parameter through ``email.message._parseparam`` (a third of the parse time on report-heavy mail).
    Anything unusual (RFC 2231 ``name*=``, comments, escapes, a value that is not ``str``, the name present
    but not in that shape) goes to the standard library, so the answer is always ``get_param``'s."""
    value = part.get("content-type")
    if value is None:
        return None
    lowered = name.lower()
    if isinstance(value, str) and "*" not in value and "(" not in value and "\\" not in value:
        seen = value.lower().count(lowered)
        if seen == 0:
            return None
        if seen == 1:
            for match in _SIMPLE_PARAM_RE.finditer(value):
                if match.group(1).lower() == lowered:
                    return match.group(2) if match.group(2) is not None else match.group(3)
    found = part.get_param(name)
    return found if isinstance(found, str) else None


def parse_bytes(data: bytes) -> Message:
    """``BytesParser(policy=compat32).parsebytes(data)``, faster; raises only what the stdlib raises."""
    return parse_bytes_typed(data)[0]


def parse_headers_text(text: str) -> Message:
    """``Parser(policy=compat32).parsestr(text, headersonly=True)``, faster: the headers, and the
    rest of the text as the payload."""
    try:
        return _Parser(text, headersonly=True).parse()
    except Exception:  # as in ``parse_bytes_typed``
        return email.parser.Parser(policy=_POLICY).parsestr(text, headersonly=True)


def parse_bytes_typed(data: bytes) -> tuple[Message, list[tuple[Message, str]] | None]:
    """``parse_bytes``, and every part with its ``get_content_type()`` in ``Message.walk()`` order
    (the order the parser made them in), as the parser worked them out; ``None`` when the stdlib
    parser had to do the work."""
    text = data.decode("ascii", errors="surrogateescape")
    try:
        parser = _Parser(text)
        return parser.parse(), parser.order
    except Exception:  # never trust the fast path over the stdlib: whatever it tripped on, redo it there
        return email.parser.Parser(policy=_POLICY).parsestr(text), None


def _boundary(part: Message) -> str | None:
    """``part.get_boundary()`` through ``simple_param`` (the stdlib also collapses an RFC 2231 value,
    which only the fallback inside ``simple_param`` can produce)."""
    value = part.get("content-type")
    if isinstance(value, str) and "*" in value:
        return part.get_boundary()
    found = simple_param(part, "boundary")
    return None if found is None else found.rstrip()


def _eol_len(text: str) -> int:
    """The length of the line ending ``text`` ends with (0, 1 or 2): what the stdlib's ``NLCRE_eol``
    search finds, without the regex scanning the whole payload for it."""
    if text.endswith("\r\n"):
        return 2
    return 1 if text.endswith(("\r", "\n")) else 0


def _set_payload(message: Message, payload: str) -> None:
    message._payload = payload  # type: ignore[attr-defined]  # what ``set_payload(str)`` does, no checks


def _payload(message: Message) -> object:
    return message._payload  # type: ignore[attr-defined]


class _Parser:
    """``FeedParser`` with all data fed at once; the line buffer is ``lines[pos:]`` after ``pushed``."""

    __slots__ = (
        "blank",
        "ctypes",
        "cur",
        "headersonly",
        "last",
        "lines",
        "msgstack",
        "n",
        "order",
        "pos",
        "pushed",
        "seps",
        "stack",
    )

    def __init__(self, text: str, *, headersonly: bool = False) -> None:
        self.headersonly = headersonly
        self.lines: list[str] = StringIO(text, newline="").readlines()
        self.n = len(self.lines)
        self.pos = 0
        #: lines given back with ``unreadline``, the next one last
        self.pushed: list[str] = []
        #: the end-of-part predicates: a boundary separator (``--b``), or ``None`` for "a blank line"
        self.stack: list[str | None] = []
        self.seps: tuple[str, ...] = ()
        self.blank = 0
        self.msgstack: list[Message] = []
        self.ctypes: list[str] = []
        #: every message made, with its content type, in the order made (``Message.walk()`` order)
        self.order: list[tuple[Message, str]] = []
        self.cur: Message | None = None
        self.last: Message | None = None

    # -- the line buffer (``BufferedSubFile``) -------------------------------------------------------

    def _push_eof(self, sep: str | None) -> None:
        self.stack.append(sep)
        self._stack_changed()

    def _pop_eof(self) -> None:
        self.stack.pop()
        self._stack_changed()

    def _stack_changed(self) -> None:
        self.seps = tuple(s for s in self.stack if s is not None)
        self.blank = len(self.stack) - len(self.seps)

    def _at_eof(self, line: str) -> bool:
        if not line:  # the "" pushed back at a false end of file matches nothing
            return False
        if self.blank and line[0] in "\r\n":
            return True
        if line.startswith("--"):
            for sep in self.seps:
                if line.startswith(sep) and _BOUNDARY_END_RE.match(line, len(sep)):
                    return True
        return False

    def readline(self) -> str:
        if self.pushed:
            line = self.pushed.pop()
        elif self.pos < self.n:
            line = self.lines[self.pos]
            self.pos += 1
        else:
            return ""
        if self.stack and self._at_eof(line):
            self.unreadline(line)
            return ""
        return line

    def unreadline(self, line: str) -> None:
        if not self.pushed and self.pos > 0 and self.lines[self.pos - 1] is line:
            self.pos -= 1
        else:
            self.pushed.append(line)

    def read_rest(self) -> list[str]:
        """Every line up to the (false) end of file, consumed."""
        out: list[str] = []
        while self.pushed:
            line = self.readline()
            if line == "":
                return out
            out.append(line)
        start = end = self.pos
        lines, n = self.lines, self.n
        if not self.stack:
            end = n
        elif self.blank:
            while end < n:
                line = lines[end]
                if (line[0] in "\r\n" or line.startswith("--")) and self._at_eof(line):
                    break
                end += 1
        else:
            while end < n:
                line = lines[end]
                if line.startswith("--") and self._at_eof(line):
                    break
                end += 1
        self.pos = end
        if start == 0 and end == n:
            return lines
        out.extend(lines[start:end])
        return out

    def skip_rest(self) -> None:
        self.read_rest()

    # -- the parser (``FeedParser``) -----------------------------------------------------------------

    def parse(self) -> Message:
        self._parsegen()
        root = self._pop_message()
        if root.get_content_maintype() == "multipart" and not root.is_multipart() and not self.headersonly:
            root.defects.append(errors.MultipartInvariantViolationDefect())
        return root

    def _new_message(self) -> None:
        msg = Message(policy=_POLICY)
        # ``self.cur``'s type (its headers are parsed by now): ``ctypes`` runs parallel to ``msgstack``
        if self.ctypes and self.ctypes[-1] == "multipart/digest":
            msg.set_default_type("message/rfc822")
        if self.msgstack:
            self.msgstack[-1].attach(msg)
        self.msgstack.append(msg)
        self.cur = msg
        self.last = msg

    def _pop_message(self) -> Message:
        retval = self.msgstack.pop()
        self.ctypes.pop()
        self.cur = self.msgstack[-1] if self.msgstack else None
        return retval

    def _parsegen(self) -> None:
        self._new_message()
        cur = self.cur
        assert cur is not None
        headers: list[str] = []
        if self.pushed:
            while True:
                line = self.readline()
                if line == "":
                    break
                if not _HEADER_RE.match(line):
                    if line[0] not in "\r\n":
                        cur.defects.append(errors.MissingHeaderBodySeparatorDefect())
                        self.unreadline(line)
                    break
                headers.append(line)
        else:
            # ``readline`` inlined: the header block is read a line at a time on every part
            lines, n, pos = self.lines, self.n, self.pos
            header_match, stack = _HEADER_RE.match, self.stack
            while pos < n:
                line = lines[pos]
                if stack and self._at_eof(line):
                    break
                pos += 1
                if not header_match(line):
                    if line[0] not in "\r\n":
                        cur.defects.append(errors.MissingHeaderBodySeparatorDefect())
                        pos -= 1
                    break
                headers.append(line)
            self.pos = pos
        if headers:
            self._parse_headers(cur, headers)

        ctype = cur.get_content_type()
        self.ctypes.append(ctype)
        self.order.append((cur, ctype))
        if self.headersonly:
            _set_payload(cur, "".join(self.read_rest()))
            return
        if ctype == "message/delivery-status":
            while True:
                self._push_eof(None)
                self._parsegen()
                self._pop_message()
                self._pop_eof()
                self.readline()
                line = self.readline()
                if line == "":
                    break
                self.unreadline(line)
            return
        maintype = ctype.split("/")[0]
        if maintype == "message":
            self._parsegen()
            self._pop_message()
            return
        if maintype == "multipart":
            self._multipart(cur)
            return
        _set_payload(cur, "".join(self.read_rest()))

    def _multipart(self, cur: Message) -> None:
        boundary = _boundary(cur)
        if boundary is None:
            cur.defects.append(errors.NoBoundaryInMultipartDefect())
            _set_payload(cur, "".join(self.read_rest()))
            return
        if str(cur.get("content-transfer-encoding", "8bit")).lower() not in ("7bit", "8bit", "binary"):
            cur.defects.append(errors.InvalidMultipartContentTransferEncodingDefect())
        separator = "--" + boundary

        def boundarymatch(line: str) -> re.Match[str] | None:
            if not line.startswith(separator):
                return None
            return _BOUNDARY_END_RE.match(line, len(separator))

        capturing_preamble = True
        preamble: list[str] = []
        linesep: str | None = None
        close_boundary_seen = False
        while True:
            line = self.readline()
            if line == "":
                break
            mo = boundarymatch(line)
            if mo:
                if mo.group("end"):
                    close_boundary_seen = True
                    linesep = mo.group("linesep")
                    break
                if capturing_preamble:
                    if preamble:
                        lastline = preamble[-1]
                        eol = _eol_len(lastline)
                        if eol:
                            preamble[-1] = lastline[:-eol]
                        cur.preamble = "".join(preamble)
                    capturing_preamble = False
                    self.unreadline(line)
                    continue
                while True:
                    line = self.readline()
                    mo = boundarymatch(line)
                    if not mo:
                        self.unreadline(line)
                        break
                self._push_eof(separator)
                self._parsegen()
                last = self.last
                assert last is not None
                if last.get_content_maintype() == "multipart":
                    epilogue = last.epilogue
                    if epilogue == "":
                        last.epilogue = None
                    elif epilogue is not None:
                        eol = _eol_len(epilogue)
                        if eol:
                            last.epilogue = epilogue[:-eol]
                else:
                    payload = _payload(last)
                    if isinstance(payload, str):
                        eol = _eol_len(payload)
                        if eol:
                            _set_payload(last, payload[:-eol])
                self._pop_eof()
                self._pop_message()
                self.last = self.cur
            else:
                preamble.append(line)
        if capturing_preamble:
            cur.defects.append(errors.StartBoundaryNotFoundDefect())
            _set_payload(cur, "".join(preamble))
            self.skip_rest()
            cur.epilogue = ""
            return
        if not close_boundary_seen:
            cur.defects.append(errors.CloseBoundaryNotFoundDefect())
            return
        epilogue_lines = [""] if linesep else []
        epilogue_lines.extend(self.read_rest())
        if epilogue_lines:
            firstline = epilogue_lines[0]
            bolmo = _NLCRE_BOL.match(firstline)
            if bolmo:
                epilogue_lines[0] = firstline[len(bolmo.group(0)) :]
        cur.epilogue = "".join(epilogue_lines)

    def _parse_headers(self, cur: Message, lines: list[str]) -> None:
        lastheader = ""
        lastvalue: list[str] = []
        raw: list[tuple[str, str]] = cur._headers  # type: ignore[attr-defined]  # what ``set_raw`` appends to
        for lineno, line in enumerate(lines):
            if line[0] in " \t":
                if not lastheader:
                    cur.defects.append(errors.FirstHeaderLineIsContinuationDefect(line))
                    continue
                lastvalue.append(line)
                continue
            if lastheader:
                raw.append(_source_parse(lastvalue))
                lastheader, lastvalue = "", []
            if line.startswith("From "):
                if lineno == 0:
                    eol = _eol_len(line)
                    if eol:
                        line = line[:-eol]
                    cur.set_unixfrom(line)
                    continue
                if lineno == len(lines) - 1:
                    self.unreadline(line)
                    return
                cur.defects.append(errors.MisplacedEnvelopeHeaderDefect(line))
                continue
            i = line.find(":")
            if i == 0:
                cur.defects.append(errors.InvalidHeaderDefect("Missing header name."))
                continue
            lastheader = line[:i]
            lastvalue = [line]
        if lastheader:
            raw.append(_source_parse(lastvalue))


def _source_parse(sourcelines: list[str]) -> tuple[str, str]:
    """``compat32.header_source_parse``."""
    name, value = sourcelines[0].split(":", 1)
    value = value.lstrip(" \t") + "".join(sourcelines[1:])
    return name, value.rstrip("\r\n")
