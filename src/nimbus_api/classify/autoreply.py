"""The auto-reply detector: out-of-office and vacation responses, and other machine answers.

A message is an ``auto_reply`` when one *decisive* signal fires:

- RFC 3834 ``Auto-Submitted`` with any value other than ``no`` (Gmail and Sieve send ``auto-replied``,
  Exchange / Office 365 ``auto-generated``);
- ``Precedence: bulk | junk | auto_reply | list``;
- a vendor's auto-reply header: ``X-Autoreply``, ``X-Autorespond``, ``X-Autoresponder``... (see
  ``PRESENCE_HEADERS``), Apple iCloud's ``X-Apple-Action: vacation``, an ``X-Mailer`` naming vacation
  software;
- an out-of-office subject (``Automatic reply:``, ``Abwesenheitsnotiz:``, ``Réponse automatique :``...,
  see ``PATTERNS``), at the start of the subject, so a person's ``Re: Automatic reply: ...`` is not one;
- an out-of-office first line of the body (``I am out of the office``, ``Ich bin bis ... nicht im
  Büro``...), looked for only in the first lines of the text, and only when the text quotes no earlier
  mail: an auto-responder does not quote, a person answering does, and "I'm out of the office tomorrow,
  but yes, let's talk" is then read as the reply it is.

Two signals are *weak* and never decide alone: ``X-Auto-Response-Suppress`` (Outlook puts it on
ordinary replies too) and ``X-MS-Exchange-Inbox-Rules-Loop`` (Exchange puts it on mail sent by any
inbox rule, forwards included). Both together are Exchange's out-of-office, and either one is listed
among the reasons when a decisive signal fires.

The detector runs after the report detectors (MTAs mark their bounces ``Auto-Submitted`` too), and
leaves alone what they own even if they missed it (``left_to_others``: a ``multipart/report`` DSN or
ARF report, mail from ``MAILER-DAEMON`` / ``postmaster``, Apple Mail's ``X-Apple-Unsubscribe``
opt-out). It runs before the reply fallback: an auto-reply is never a reply, whatever its ``Re:`` or ``In-Reply-To``.

Every reason is a stable string: ``header:auto-submitted=auto-replied``, ``header:precedence=bulk``,
``header:x-autoreply``, ``header:x-apple-action=vacation``, ``header:x-mailer=vacation-software``,
``header:x-auto-response-suppress``, ``header:x-ms-exchange-inbox-rules-loop``, ``subject:ooo-<lang>``,
``body:ooo-<lang>``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from nimbus_api.classify.parsing import Parsed, message_ids
from nimbus_api.classify.types import Classification, Recipient

Field = Literal["subject", "body"]


@dataclass(frozen=True, slots=True)
class Pattern:
    """One row of the wording table.

    ``pattern`` is a regular expression matched case-insensitively at the start of the subject, or of
    one of the body's first lines, both folded (``fold``: accents, ``ß``, ``ł``, curly apostrophes and
    non-breaking spaces normalised), so a row written ``Réponse automatique`` also matches a client
    that drops the accents. ``needs_thread``: the row counts only on a message that answers another
    (``In-Reply-To`` / ``References``); for ``Auto:``, which is also the German word for car.
    ``example``: a text the row must match (the tests check every row against it).
    """

    lang: str
    field: Field
    pattern: str
    example: str
    needs_thread: bool = False

    @property
    def reason(self) -> str:
        return f"{self.field}:ooo-{self.lang}"


# A prefix ends with a colon (``Automatic reply:``, French ``Réponse automatique :``); a bare phrase
# (``Out of Office``) with a word boundary.
_END = r"\s*:"
_WORD = r"\b"
# What follows "I am out of the office" in an auto-reply: a date range, a return, the end of the clause
# ("I'm out of the office tomorrow, but yes" and "away from my desk a lot" are a person writing).
_ABSENCE_GOES_ON = r"(?: until| till| through| from| and| with| on| returning| for|\s*[.,;:!]|\s*$)"

#: The wording table: language, field, pattern, an example it must match.
PATTERNS: tuple[Pattern, ...] = (
    # --- English (Outlook / Exchange / Office 365, Apple, Gmail users' own subjects, RFC 3834 "Auto:")
    Pattern("en", "subject", r"automatic reply" + _END, "Automatic reply: Our proposal"),
    Pattern("en", "subject", r"auto[- ]?reply" + _END, "Auto reply: Nyaan"),
    Pattern("en", "subject", r"auto(?:matic)?[- ]?response" + _END, "Auto response: Pricing"),
    Pattern("en", "subject", r"out of (?:the )?office" + _WORD, "Out of Office AutoReply: Pricing"),
    Pattern("en", "subject", r"(?:ooo|oof)" + _END, "OOO: back on Monday"),
    Pattern("en", "subject", r"(?:on )?(?:vacation|holiday) (?:reply|response|notice)" + _WORD,
            "Vacation reply"),
    Pattern("en", "subject", r"away (?:until|till|from (?:the )?office)" + _WORD, "Away until May 5"),
    Pattern("en", "subject", r"auto" + _END, "Auto: Our proposal", needs_thread=True),
    Pattern("en", "body", r"(?:i am|i'm|i will be|i'll be) (?:currently |now )?(?:out of (?:the )?office|"
            r"away from (?:the |my )?(?:office|desk|e-?mail))" + _ABSENCE_GOES_ON,
            "I am currently out of the office."),
    Pattern("en", "body", r"(?:i am|i'm) (?:currently |now )?(?:away(?! from (?:the |my )?(?:office|desk|e-?mail))|"
            r"on (?:annual |parental |maternity |paternity |sick )?(?:leave|vacation|holiday))" + _ABSENCE_GOES_ON,
            "I'm on vacation until 12 May."),
    Pattern("en", "body", r"this is an? (?:automatic|automated|auto-generated) (?:reply|response|message)",
            "This is an automatic reply."),
    # --- German
    Pattern("de", "subject", r"abwesenheitsnotiz" + _WORD, "Abwesenheitsnotiz: Unser Angebot"),
    Pattern("de", "subject", r"automatische antwort" + _END, "Automatische Antwort: Unser Angebot"),
    Pattern("de", "subject", r"(?:nicht im büro|außer haus|abwesend)" + _WORD, "Nicht im Büro"),
    Pattern("de", "body", r"ich bin (?:bis|vom|von|ab|am|zwischen) .{1,60}? (?:nicht im (?:büro|hause?)|"
            r"abwesend|außer haus|im urlaub|nicht erreichbar)", "Ich bin bis zum 12. Mai nicht im Büro."),
    Pattern("de", "body", r"ich bin (?:derzeit|zurzeit|zur zeit|momentan|aktuell|leider) (?:nicht im "
            r"(?:büro|hause?)|abwesend|außer haus|im urlaub|nicht erreichbar)",
            "Ich bin derzeit nicht im Büro."),
    Pattern("de", "body", r"ich befinde mich (?:derzeit |zurzeit |momentan |aktuell |bis .{1,60}? )?"
            r"(?:im urlaub|außer haus|nicht im büro)", "Ich befinde mich bis 12. Mai im Urlaub."),
    Pattern("de", "body", r"(?:dies ist|das ist|diese nachricht ist) eine automatische (?:antwort|nachricht)",
            "Dies ist eine automatische Antwort."),
    # --- French
    Pattern("fr", "subject", r"réponse automatique" + _WORD, "Réponse automatique : Notre offre"),
    Pattern("fr", "subject", r"absen(?:ce|t|te) (?:du|de) bureau" + _WORD, "Absence du bureau"),
    Pattern("fr", "body", r"je suis (?:actuellement |présentement )?(?:absente?|en (?:congés?|vacances|"
            r"déplacement)|hors du bureau)", "Je suis absent du bureau jusqu'au 12 mai."),
    Pattern("fr", "body", r"je serai (?:absente?|en (?:congés?|vacances))", "Je serai absente jusqu'au 12 mai."),
    Pattern("fr", "body", r"ceci est (?:une réponse|un message) automatique", "Ceci est une réponse automatique."),
    # --- Spanish
    Pattern("es", "subject", r"respuesta automática" + _WORD, "Respuesta automática: Nuestra oferta"),
    Pattern("es", "subject", r"fuera de (?:la )?oficina" + _WORD, "Fuera de la oficina"),
    Pattern("es", "body", r"(?:estoy|estaré|me encuentro|actualmente estoy|actualmente me encuentro) "
            r"(?:fuera de (?:la )?oficina|de vacaciones|ausente)", "Estoy fuera de la oficina hasta el 12 de mayo."),
    Pattern("es", "body", r"(?:esta|este) es (?:una respuesta|un mensaje) automátic[ao]",
            "Esta es una respuesta automática."),
    # --- Italian
    Pattern("it", "subject", r"risposta automatica" + _WORD, "Risposta automatica: La nostra offerta"),
    Pattern("it", "subject", r"fuori (?:sede|ufficio)" + _WORD, "Fuori sede"),
    Pattern("it", "body", r"(?:sono|sarò) (?:attualmente )?(?:fuori (?:sede|ufficio)|in (?:ferie|vacanza)|"
            r"assente)", "Sono fuori ufficio fino al 12 maggio."),
    Pattern("it", "body", r"questa è una risposta automatica", "Questa è una risposta automatica."),
    # --- Dutch
    Pattern("nl", "subject", r"automatisch antwoord" + _WORD, "Automatisch antwoord: Ons voorstel"),
    Pattern("nl", "subject", r"(?:afwezig|afwezigheidsbericht|niet op kantoor)" + _WORD, "Afwezig"),
    Pattern("nl", "body", r"ik ben (?:momenteel |op dit moment |tot .{1,40}? )?(?:afwezig|niet op kantoor|"
            r"met vakantie|op vakantie)", "Ik ben tot 12 mei afwezig."),
    Pattern("nl", "body", r"dit is een automatisch (?:antwoord|bericht)", "Dit is een automatisch antwoord."),
    # --- Portuguese
    Pattern("pt", "subject", r"resposta automática" + _WORD, "Resposta automática: A nossa proposta"),
    Pattern("pt", "subject", r"(?:fora do escritório|ausente do escritório)" + _WORD, "Fora do escritório"),
    Pattern("pt", "body", r"(?:estou|estarei|encontro-me) (?:atualmente )?(?:fora do escritório|de férias|"
            r"ausente)", "Estou fora do escritório até 12 de maio."),
    Pattern("pt", "body", r"(?:esta|este) é (?:uma resposta|uma mensagem|um e-?mail) automátic[ao]",
            "Esta é uma resposta automática."),
    # --- Swedish
    Pattern("sv", "subject", r"(?:automatiskt svar|autosvar)" + _WORD, "Automatiskt svar: Vårt förslag"),
    Pattern("sv", "subject", r"(?:frånvaro|frånvarande|frånvaromeddelande)" + _WORD, "Frånvaro"),
    Pattern("sv", "body", r"jag är (?:för närvarande |just nu )?(?:ledig|borta|på semester|tjänstledig|"
            r"frånvarande|inte på kontoret)", "Jag är ledig till och med 12 maj."),
    Pattern("sv", "body", r"detta är ett automatiskt (?:svar|meddelande)", "Detta är ett automatiskt svar."),
    # --- Polish
    Pattern("pl", "subject", r"(?:odpowiedź automatyczna|automatyczna odpowiedź)" + _WORD,
            "Odpowiedź automatyczna: Nasza oferta"),
    Pattern("pl", "subject", r"(?:poza biurem|nieobecność)" + _WORD, "Poza biurem"),
    Pattern("pl", "body", r"(?:jestem|będę) (?:obecnie |aktualnie )?(?:poza biurem|na urlopie|nieobecn[ya])",
            "Jestem poza biurem do 12 maja."),
    Pattern("pl", "body", r"przebywam na urlopie", "Przebywam na urlopie do 12 maja."),
    Pattern("pl", "body", r"(?:to jest|ta wiadomość jest) (?:automatyczn[ay] (?:odpowiedź|wiadomość)|"
            r"odpowiedzią automatyczną)", "To jest automatyczna odpowiedź."),
)  # fmt: skip

# --- folding -------------------------------------------------------------------------------------
_FOLD_TABLE = str.maketrans(
    {
        "ß": "ss",
        "ł": "l",
        "Ł": "L",
        "ø": "o",
        "Ø": "O",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "\u2019": "'",
        "\u2018": "'",
        "\u02bc": "'",
        "\u00a0": " ",
        "\u202f": " ",
        "\u2007": " ",
    }
)
_SPACES_RE = re.compile(r"[ \t]+")


def _strip_marks(text: str) -> str:
    if text.isascii():  # nearly every line: nothing to fold
        return text
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD_TABLE))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def fold(text: str) -> str:
    """Text as the patterns see it: accents and ligatures removed, spaces and apostrophes normalised."""
    return _SPACES_RE.sub(" ", _strip_marks(text)).strip()


@dataclass(frozen=True, slots=True)
class _Compiled:
    row: Pattern
    regex: re.Pattern[str]


def _compile(field: Field) -> tuple[tuple[_Compiled, ...], re.Pattern[str]]:
    rows = tuple(_Compiled(row, re.compile(_strip_marks(row.pattern), re.I)) for row in PATTERNS if row.field == field)
    # One alternation of every row: a message that matches none (nearly all) costs one regex match.
    any_row = re.compile("|".join(f"(?:{c.regex.pattern})" for c in rows), re.I)
    return rows, any_row


_SUBJECT_ROWS, _SUBJECT_ANY = _compile("subject")
_BODY_ROWS, _BODY_ANY = _compile("body")


def compiled_row(row: Pattern) -> re.Pattern[str]:
    """The compiled regex of one table row (for the tests)."""
    for c in (*_SUBJECT_ROWS, *_BODY_ROWS):
        if c.row is row:
            return c.regex
    raise KeyError(row)


# --- headers -------------------------------------------------------------------------------------
#: Headers whose mere presence (any value but a negative one) marks an automatic answer.
PRESENCE_HEADERS: tuple[str, ...] = (
    "X-Autoreply",
    "X-Autorespond",
    "X-Autoresponder",
    "X-Auto-Reply",
    "X-Autoresponse",
    "X-Auto-Response",
    "X-Mail-Autoreply",
    "X-Vacation",
)
_NEGATIVE_VALUES = frozenset({"no", "false", "0", "off"})
PRECEDENCE_VALUES = frozenset({"bulk", "junk", "auto_reply", "list"})
#: ``X-Mailer`` / ``User-Agent`` values of vacation software (Unix vacation(1), autoresponders).
_VACATION_MAILER_RE = re.compile(r"\b(?:vacation|auto[- ]?reply|auto[- ]?responder|out[- ]of[- ]office)\b", re.I)
_TOKEN_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def _token(value: str) -> str:
    """The leading keyword of a header value, lower-cased (``auto-replied (vacation)`` -> ``auto-replied``)."""
    found = _TOKEN_RE.match(value.strip().lower())
    return found.group(0)[:40] if found else ""


def _header_signals(parsed: Parsed) -> tuple[list[str], list[str]]:
    """(decisive reasons, weak reasons) from the headers."""
    strong: list[str] = []
    weak: list[str] = []
    for value in parsed.headers("Auto-Submitted"):
        keyword = _token(value)
        if keyword and keyword != "no":
            strong.append(f"header:auto-submitted={keyword}")
            break
    for value in (*parsed.headers("Precedence"), *parsed.headers("X-Precedence")):
        keyword = _token(value)
        if keyword in PRECEDENCE_VALUES:
            strong.append(f"header:precedence={keyword}")
            break
    for name in PRESENCE_HEADERS:
        if parsed.has_header(name) and _token(parsed.header(name)) not in _NEGATIVE_VALUES:
            strong.append(f"header:{name.lower()}")
    if _token(parsed.header("X-Apple-Action")) == "vacation":
        strong.append("header:x-apple-action=vacation")
    if _token(parsed.header("X-Autogenerated")) == "reply":
        strong.append("header:x-autogenerated=reply")
    if _VACATION_MAILER_RE.search(parsed.header("X-Mailer")):
        strong.append("header:x-mailer=vacation-software")
    if parsed.has_header("X-Auto-Response-Suppress"):
        weak.append("header:x-auto-response-suppress")
    if parsed.has_header("X-MS-Exchange-Inbox-Rules-Loop"):
        weak.append("header:x-ms-exchange-inbox-rules-loop")
    return strong, weak


# --- subject and body ----------------------------------------------------------------------------
def _match_rows(text: str, rows: tuple[_Compiled, ...], any_row: re.Pattern[str], threaded: bool) -> str:
    if not text or not any_row.match(text):
        return ""
    for c in rows:
        if c.row.needs_thread and not threaded:
            continue
        if c.regex.match(text):
            return c.row.reason
    return ""


#: How many non-empty lines of the body's start are read for out-of-office wording, and how far.
BODY_LINES = 4
BODY_SCAN_CHARS = 4000
_QUOTE_MARKER_RE = re.compile(
    r"^\s*>|"
    r"^\s*-{3,}\s*(?:original message|ursprüngliche nachricht|message d'origine|mensaje original|"
    r"messaggio originale|oorspronkelijk bericht|mensagem original|originalmeddelande|"
    r"oryginalna wiadomość|forwarded message)|"
    r"^\s*(?:on|am|le|el|il|op|em|den|dnia|w dniu)\s.{3,200}(?:wrote|schrieb|a écrit|escribió|ha scritto|"
    r"schreef|escreveu|skrev|napisał\(a\)|napisał|napisała)\s*:\s*$|"
    r"^\s*(?:from|von|de|da|van|från|od)\s*:.+\n\s*(?:sent|gesendet|envoyé|enviado|inviato|verzonden|"
    r"skickat|wysłano|date|datum)\s*:",
    re.I | re.M,
)


#: Tags gateways put in front of a subject (``[EXTERNAL]``, ``[SPAM?]``), skipped before the rows.
_TAG_RE = re.compile(r"^(?:\s*\[[^\]\n]{1,30}\])+\s*")


def _quotes_history(text: str) -> bool:
    return _QUOTE_MARKER_RE.search(text) is not None


def _first_lines(text: str) -> list[str]:
    lines: list[str] = []
    for line in text[:BODY_SCAN_CHARS].splitlines():
        folded = fold(line)
        if not folded:
            continue
        if folded.startswith(">"):
            break
        lines.append(folded)
        if len(lines) >= BODY_LINES:
            break
    return lines


#: A thank-you sentence auto-replies open with ("Thank you for your message. I am out of the office"):
#: the wording is looked for after it too, as if it were the start of the line.
THANKS_RE = re.compile(
    _strip_marks(
        r"^(?:thank you|thanks|many thanks|vielen dank|herzlichen dank|danke|merci|gracias|muchas gracias|"
        r"grazie|bedankt|dank u|dank je|hartelijk dank|obrigad[oa]|muito obrigad[oa]|tack|dziękuję|"
        r"dziekuje)\b[^.!]{0,100}[.!]\s*"
    ),
    re.I,
)


def _body_reason(text: str, threaded: bool) -> str:
    for line in _first_lines(text):
        candidates = [line]
        thanks = THANKS_RE.match(line)
        if thanks and thanks.end() < len(line):
            candidates.append(line[thanks.end() :])
        for candidate in candidates:
            reason = _match_rows(candidate, _BODY_ROWS, _BODY_ANY, threaded)
            if reason:
                return reason
    return ""


#: Report types the report detectors own (a DSN, an ARF complaint): never claimed here, whatever their
#: headers say. A disposition notification (read receipt) is an automatic answer and may be claimed.
REPORT_TYPES_NOT_OURS = frozenset({"delivery-status", "feedback-report", ""})
#: Senders that are mail systems, not people: their auto-submitted mail is a bounce or a notice.
_SYSTEM_SENDER_RE = re.compile(r"^(?:mailer-daemon|mail-daemon|postmaster|mail\.delivery\.subsystem)$", re.I)


def left_to_others(parsed: Parsed, from_address: str | None = None) -> bool:
    """A delivery report, a mail system's own message or an unsubscribe: left to the other detectors.

    MTAs mark their bounces ``Auto-Submitted: auto-replied`` / ``auto-generated`` too (148 of the
    corpus's 300 bounces): if a report detector misses one, it must fall through as ``other``, not be
    read as the recipient's out-of-office.
    """
    if parsed.content_type == "multipart/report":
        report_type = str(parsed.message.get_param("report-type", "") or "").lower()
        if report_type in REPORT_TYPES_NOT_OURS:
            return True
    if _token(parsed.header("X-Apple-Unsubscribe")) == "true":  # Apple Mail's unsubscribe: an opt-out
        return True
    sender = parsed.from_address if from_address is None else from_address
    local = sender.partition("@")[0]
    return bool(local and _SYSTEM_SENDER_RE.match(local))


def detect(parsed: Parsed) -> Classification | None:
    """``auto_reply`` with the reasons that fired, or ``None`` when nothing says the message is automatic."""
    sender = parsed.from_address
    if left_to_others(parsed, sender):
        return None
    strong, weak = _header_signals(parsed)
    in_reply_to = message_ids(parsed.header("In-Reply-To"))
    references = message_ids(" ".join(parsed.headers("References")))
    threaded = bool(in_reply_to or references)

    subject = _TAG_RE.sub("", fold(parsed.subject))
    subject_reason = _match_rows(subject, _SUBJECT_ROWS, _SUBJECT_ANY, threaded)
    decisive = [*strong]
    if subject_reason:
        decisive.append(subject_reason)
    text = parsed.body_text()
    body_reason = _body_reason(text, threaded) if text else ""
    if body_reason and not _quotes_history(text[: BODY_SCAN_CHARS * 4]):
        decisive.append(body_reason)
    if decisive:
        reasons = (*decisive, *weak)
    elif len(weak) >= 2:  # Exchange's out-of-office: both weak headers and nothing else
        reasons = tuple(weak)
    else:
        return None
    original = in_reply_to[0] if in_reply_to else (references[-1] if references else "")
    recipient = Recipient(address=sender, action="delivered", reason="vacation")
    return Classification(
        kind="auto_reply",
        reasons=tuple(dict.fromkeys(reasons)),
        recipients=(recipient,) if sender else (),
        original_message_id=original,
    )
