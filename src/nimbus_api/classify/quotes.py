"""The text a person wrote in a reply, without the quoted history and, where detectable, the signature.

``new_text(parsed)`` reads the first ``text/plain`` part (else the HTML part's text), lets
``mail-parser-reply`` split it at the quote headers mail clients write ("On ... wrote:", "Am ...
schrieb ...:", Outlook's "From: / Sent:" block, "-----Original Message-----") in every language it
knows, then cleans what the library leaves: quote headers in the languages it lacks (Spanish
"escribió", Portuguese "escreveu"...), ``>``-quoted lines (an answer written between quoted lines is
kept), a signature after the RFC 3676 ``-- `` line. The library's own signature cut is taken only when
it starts at a sign-off line ("Best regards,", "Mit freundlichen Grüßen", "Thanks, Anna"): it would
otherwise drop everything after a sentence such as "Thanks, that works for me." Never raises: on any
failure it falls back to its own stripping, at worst to the text as it is.
"""

from __future__ import annotations

import re

from nimbus_api.classify.parsing import Parsed, strip_html

#: The languages handed to mail-parser-reply (those it has wording for; English is always added).
LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs")
#: The library's regexes run on at most this much text; quoted history is all that lies beyond.
LIBRARY_LIMIT = 32_000
#: Our own stripping reads at most this much.
TEXT_LIMIT = 256_000

_QUOTE_HEADER_RE = re.compile(
    r"^[ \t]*(?:"
    # "On Thu, 3 Dec 2026 at 10:00, Bob <bob@x> wrote:" and its translations; may wrap onto a 2nd line.
    r"(?:on|am|le|el|il|op|em|den|d\.|dne|dnia|w dniu)\s[^\n]{0,200}(?:\n[^\n]{0,200})?"
    r"(?:wrote|schrieb|a écrit|escribió|ha scritto|schreef|escreveu|skrev|napsal\(a\)|napisał\(a\)|"
    r"napisał|napisała)[^\n:]{0,80}:[ \t]*$"
    # Any other one-line form with a date or an address ("czw., 3 gru 2026 ... napisał(a):").
    r"|(?=[^\n]{0,400}?\s(?:wrote|schrieb|a écrit|escribió|ha scritto|schreef|escreveu|skrev|napsal\(a\)|"
    r"napisał\(a\)|napisał|napisała)[ \t]*:[ \t]*$)[^\n]*?[\d@]"
    r"|-{3,}[ \t]*(?:original message|ursprüngliche nachricht|message d'origine|mensaje original|"
    r"messaggio originale|oorspronkelijk bericht|mensagem original|originalmeddelande|"
    r"oryginalna wiadomość|forwarded message|weitergeleitete nachricht|message transféré)[ \t]*-*[ \t]*$"
    r"|_{20,}[ \t]*$"
    r"|(?:from|von|de|da|van|från|od|fra)[ \t]*:[^\n]*\n[ \t]*(?:sent|gesendet|envoyé|enviado|enviada|"
    r"inviato|verzonden|skickat|wysłano|sendt|date|datum|data|fecha|to|an|à|para|a|aan|till|do|til)[ \t]*:"
    r")",
    re.I | re.M,
)
_QUOTED_LINE_RE = re.compile(r"^[ \t]*>")
_SIG_DELIMITER_RE = re.compile(r"^-- ?$", re.M)
_BLANKS_RE = re.compile(r"\n{3,}")


def source_text(parsed: Parsed) -> str:
    """The first text/plain part, else the first text/html part's text."""
    try:
        text = parsed.first_text("plain")
        if text.strip():
            return text
        html = parsed.first_text("html")
        return strip_html(html) if html else ""
    except Exception:
        return ""


def new_text(parsed: Parsed) -> str:
    """What the sender wrote in this message, quotes and (where detectable) signature removed."""
    try:
        return extract(source_text(parsed))
    except Exception:  # the contract is never to raise; the raw text is the last resort
        return _tidy(source_text(parsed))


def extract(text: str) -> str:
    """``new_text`` on a plain string."""
    text = text[:TEXT_LIMIT].replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return ""
    top = _library_reply(text)
    if top is None:
        top = text
    cleaned = strip_quotes(top)
    if not cleaned and top is not text:  # the library cut everything: take our own reading
        cleaned = strip_quotes(text)
    return cleaned


def _library_reply(text: str) -> str | None:
    """The library's latest reply, with its signature cut only when it starts at a sign-off line."""
    try:
        from mailparser_reply.parser import EmailMessage  # type: ignore[import-untyped]

        message = EmailMessage(text=text[:LIBRARY_LIMIT], languages=list(LANGUAGES), keep_hyphen_lists=True)
        message.read()
        if not message.replies:
            return None
        reply = message.replies[0]
        content = str(reply.content)
        signature = str(reply.signatures or "")
        headers = str(reply.headers or "")
        if headers:
            content = content.replace(headers, "", 1)
        if signature and _is_sign_off(signature):
            content = content.replace(signature, "", 1)
        return content
    except Exception:
        return None


def _is_sign_off(signature: str) -> bool:
    """Whether a signature the library found starts at a sign-off, not inside a sentence.

    ``Best regards,``, ``Mit freundlichen Grüßen``, ``Thanks, Anna``, ``--``: yes. ``Thanks, that works
    for me.``: no (after the comma comes a sentence, not a name).
    """
    first = signature.strip().split("\n", 1)[0].strip()
    if first.startswith(("--", "__")):
        return True
    if not first or first[-1] in ".?:;" or any(ch.isdigit() for ch in first):
        return False
    phrase, _, name = first.rstrip(",!").partition(",")
    if len(phrase.split()) > 4:
        return False
    words = name.split()
    return len(words) <= 3 and all(word[:1].isupper() for word in words)


def strip_quotes(text: str) -> str:
    """Cut at the first quote header, drop ``>`` lines, cut at an RFC 3676 signature line."""
    header = _QUOTE_HEADER_RE.search(text)
    if header:
        text = text[: header.start()]
    signature = _SIG_DELIMITER_RE.search(text)
    if signature:
        text = text[: signature.start()]
    lines = [line.rstrip() for line in text.split("\n") if not _QUOTED_LINE_RE.match(line)]
    return _tidy("\n".join(lines))


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANKS_RE.sub("\n\n", "\n".join(lines)).strip()
