"""Out-of-office messages in the formats the big mail systems send, and human replies to test against.

Each builder returns an ``email.message.EmailMessage`` ready to be sent over SMTP (``smtplib.send_message``
or ``aiosmtplib.send``) or classified (``bytes(message)``). The header sets follow what the systems
write:

- **Exchange / Office 365** (``exchange_ooo``): subject ``Automatic reply: <subject>`` in the
  recipient's Outlook language, ``Auto-Submitted: auto-generated``, ``X-Auto-Response-Suppress: All``,
  ``X-MS-Exchange-Inbox-Rules-Loop: <mailbox>``, ``Thread-Topic``/``Thread-Index``, a
  multipart/alternative body, no ``Precedence``.
- **Gmail's vacation responder** (``gmail_vacation``): ``Auto-Submitted: auto-replied`` and no
  ``Precedence``; the subject is the one the user set, or ``Re: <subject>`` when none was set; a
  ``<CA...@mail.gmail.com>`` Message-ID; text/plain and text/html (``<div dir="ltr">``).
- **Apple iCloud** (``apple_vacation``): no ``Auto-Submitted`` at all, ``X-Apple-Action: VACATION``
  with ``X-Apple-Criteria``, subject ``Auto reply: <subject>``, Message-ID ``<uuid-vac@...>`` (as in the
  corpus message ``rfc3834/0003.eml``).
- **Dovecot Pigeonhole Sieve ``vacation``** (``sieve_vacation``): the header set Pigeonhole 0.5.19
  writes (captured from ``sieve-test -e``): ``X-Sieve``, ``Auto-Submitted: auto-replied (vacation)``,
  ``Precedence: bulk``, ``X-Auto-Response-Suppress: All``, subject ``Auto: <subject>``, From ``<>``
  envelope.
- **Human replies** (``outlook_reply``, ``gmail_reply``): what an ordinary answer looks like, with the
  quoted history; Outlook's carries ``X-Auto-Response-Suppress`` too.

Every builder takes ``from_addr``, ``to_addr``, ``subject`` (the subject of *our* message being answered)
and ``in_reply_to`` (its Message-ID, with or without angle brackets).
"""

from __future__ import annotations

import email.utils
import hashlib
import uuid
from collections.abc import Callable
from email.message import EmailMessage

#: What every out-of-office builder looks like: ``builder(lang, from_addr=..., to_addr=..., subject=...,
#: in_reply_to=..., text=...)``.
Builder = Callable[..., EmailMessage]

DEFAULT_FROM = "Anna Example <anna@prospect.example>"
DEFAULT_TO = "Bob Sender <bob@nimbus.example>"
DEFAULT_SUBJECT = "Our proposal for ACME"
DEFAULT_IN_REPLY_TO = "<campaign-1.step-1@nimbus.example>"
DATE = "Thu, 03 Dec 2026 10:00:30 +0000"

#: Outlook's localised subject prefix of an automatic reply (what Exchange writes in front of the
#: subject, in the language of the mailbox).
EXCHANGE_PREFIX: dict[str, str] = {
    "en": "Automatic reply: ",
    "de": "Automatische Antwort: ",
    "fr": "Réponse automatique\u00a0: ",
    "es": "Respuesta automática: ",
    "it": "Risposta automatica: ",
    "nl": "Automatisch antwoord: ",
    "pt": "Resposta automática: ",
    "sv": "Automatiskt svar: ",
    "pl": "Odpowiedź automatyczna: ",
}

#: A typical out-of-office text per language (greeting, the out-of-office sentence, who to contact).
OOO_TEXT: dict[str, str] = {
    "en": "Hello,\n\nThank you for your email. I am out of the office until 14 December with limited "
    "access to email.\nFor urgent matters please contact sales@prospect.example.\n\nBest regards,\nAnna",
    "de": "Guten Tag,\n\nvielen Dank für Ihre Nachricht. Ich bin bis zum 14. Dezember nicht im Büro und "
    "habe keinen Zugriff auf meine E-Mails.\nIn dringenden Fällen wenden Sie sich bitte an "
    "vertrieb@prospect.example.\n\nMit freundlichen Grüßen\nAnna",
    "fr": "Bonjour,\n\nJe suis absente du bureau jusqu'au 14 décembre et n'ai qu'un accès limité à mes "
    "e-mails.\nPour toute urgence, merci de contacter ventes@prospect.example.\n\nCordialement,\nAnna",
    "es": "Hola:\n\nGracias por tu mensaje. Estoy fuera de la oficina hasta el 14 de diciembre.\n"
    "Para asuntos urgentes escribe a ventas@prospect.example.\n\nSaludos,\nAnna",
    "it": "Buongiorno,\n\nsono fuori ufficio fino al 14 dicembre con accesso limitato alla posta.\n"
    "Per urgenze scrivere a vendite@prospect.example.\n\nCordiali saluti,\nAnna",
    "nl": "Beste,\n\nIk ben tot 14 december afwezig en heb beperkt toegang tot mijn e-mail.\n"
    "Voor dringende zaken kunt u mailen naar verkoop@prospect.example.\n\nMet vriendelijke groet,\nAnna",
    "pt": "Olá,\n\nObrigada pela sua mensagem. Estou fora do escritório até 14 de dezembro.\n"
    "Para assuntos urgentes contacte vendas@prospect.example.\n\nCumprimentos,\nAnna",
    "sv": "Hej,\n\nTack för ditt mejl. Jag är ledig till och med 14 december.\n"
    "Vid brådskande ärenden, kontakta salj@prospect.example.\n\nVänliga hälsningar,\nAnna",
    "pl": "Dzień dobry,\n\nJestem poza biurem do 14 grudnia z ograniczonym dostępem do poczty.\n"
    "W pilnych sprawach proszę pisać na sprzedaz@prospect.example.\n\nPozdrawiam,\nAnna",
}

#: The subject a Gmail user typically sets on the vacation responder.
GMAIL_SUBJECT: dict[str, str] = {
    "en": "Out of office",
    "es": "Fuera de la oficina",
    "it": "Fuori sede",
    "de": "Abwesenheitsnotiz",
    "fr": "Absence du bureau",
    "nl": "Afwezig",
    "pt": "Fora do escritório",
    "sv": "Frånvaro",
    "pl": "Poza biurem",
}


def _bracket(message_id: str) -> str:
    message_id = message_id.strip()
    if not message_id:
        return ""
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def _domain(address: str) -> str:
    _, addr = email.utils.parseaddr(address)
    return addr.rpartition("@")[2] or "example.invalid"


def _mailbox(address: str) -> str:
    return email.utils.parseaddr(address)[1]


def _html(text: str, wrapper: str) -> str:
    import html

    paragraphs = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
    return f"<html><head><style>p {{margin:0}}</style></head><body>{wrapper.format(paragraphs)}</body></html>"


def _thread(message: EmailMessage, in_reply_to: str) -> None:
    parent = _bracket(in_reply_to)
    if parent:
        message["In-Reply-To"] = parent
        message["References"] = parent


def exchange_ooo(
    lang: str = "en",
    *,
    from_addr: str = DEFAULT_FROM,
    to_addr: str = DEFAULT_TO,
    subject: str = DEFAULT_SUBJECT,
    in_reply_to: str = DEFAULT_IN_REPLY_TO,
    text: str | None = None,
) -> EmailMessage:
    """An Exchange Online / Office 365 automatic reply (the "Automatic replies" of Outlook)."""
    body = text if text is not None else OOO_TEXT[lang]
    seed = hashlib.sha256(f"{from_addr}{subject}{in_reply_to}".encode()).hexdigest()
    message = EmailMessage()
    message["From"] = from_addr
    message["To"] = to_addr
    message["Subject"] = EXCHANGE_PREFIX[lang] + subject
    message["Thread-Topic"] = subject
    message["Thread-Index"] = "AQHbZ" + seed[:22]
    message["Date"] = DATE
    message["Message-ID"] = f"<{seed[:32].upper()}@AM9PR01MB7345.eurprd01.prod.exchangelabs.com>"
    _thread(message, in_reply_to)
    message["Content-Language"] = {"en": "en-US", "de": "de-DE", "fr": "fr-FR"}.get(lang, lang)
    message["X-MS-Has-Attach"] = ""
    message["X-MS-Exchange-Organization-SCL"] = "-1"
    message["X-MS-TNEF-Correlator"] = ""
    message["Auto-Submitted"] = "auto-generated"
    message["X-MS-Exchange-Inbox-Rules-Loop"] = _mailbox(from_addr)
    message["X-MS-Exchange-Transport-CrossTenantHeadersStamped"] = "AM9PR01MB7345"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(body)
    message.add_alternative(_html(body, '<div class="WordSection1">{}</div>'), subtype="html")
    return message


def gmail_vacation(
    lang: str = "en",
    *,
    from_addr: str = DEFAULT_FROM,
    to_addr: str = DEFAULT_TO,
    subject: str = DEFAULT_SUBJECT,
    in_reply_to: str = DEFAULT_IN_REPLY_TO,
    vacation_subject: str | None = "",
    text: str | None = None,
) -> EmailMessage:
    """Gmail's vacation responder. ``vacation_subject`` ``""`` = the language's usual one
    (``GMAIL_SUBJECT``), ``None`` = none set, so Gmail answers ``Re: <subject>``."""
    body = text if text is not None else OOO_TEXT[lang]
    response_subject = f"Re: {subject}" if vacation_subject is None else vacation_subject or GMAIL_SUBJECT[lang]
    seed = hashlib.sha256(f"gmail{from_addr}{subject}{in_reply_to}".encode()).hexdigest()
    message = EmailMessage()
    message["MIME-Version"] = "1.0"
    message["From"] = from_addr
    message["Date"] = DATE
    message["Message-ID"] = f"<CA+{seed[:40]}@mail.gmail.com>"
    message["Subject"] = response_subject
    message["To"] = to_addr
    _thread(message, in_reply_to)
    message["Auto-Submitted"] = "auto-replied"
    message.set_content(body)
    message.add_alternative(_html(body, '<div dir="ltr">{}</div>'), subtype="html")
    return message


def apple_vacation(
    lang: str = "en",
    *,
    from_addr: str = "Anna Example <anna@icloud.example>",
    to_addr: str = DEFAULT_TO,
    subject: str = DEFAULT_SUBJECT,
    in_reply_to: str = DEFAULT_IN_REPLY_TO,
    text: str | None = None,
) -> EmailMessage:
    """An iCloud Mail vacation reply: ``X-Apple-Action: VACATION``, no ``Auto-Submitted``."""
    body = text if text is not None else OOO_TEXT[lang]
    vac = uuid.uuid5(uuid.NAMESPACE_URL, f"apple:{from_addr}:{subject}:{in_reply_to}")
    message = EmailMessage()
    message["From"] = _mailbox(from_addr)
    message["To"] = to_addr
    message["Subject"] = f"Auto reply: {subject}"
    message["Date"] = DATE
    message["Message-id"] = f"<{vac}-vac@{_domain(from_addr)}>"
    _thread(message, in_reply_to)
    message["X-Apple-Criteria"] = "{kind=VACATION,startDate=2026-11-30T15:00:00Z,endDate=2026-12-14T14:59:59Z}"
    message["X-Apple-Action"] = "VACATION"
    message["X-Apple-UUID"] = str(vac)
    message["X-Apple-Server"] = "mr36p30ic-tygg11203501 mailgateway 1923B114"
    message.set_content(body)
    return message


def sieve_vacation(
    lang: str = "en",
    *,
    from_addr: str = "<anna@prospect.example>",
    to_addr: str = DEFAULT_TO,
    subject: str = DEFAULT_SUBJECT,
    in_reply_to: str = DEFAULT_IN_REPLY_TO,
    text: str | None = None,
) -> EmailMessage:
    """A Dovecot Pigeonhole Sieve ``vacation`` response, header for header as Pigeonhole 0.5.19 writes it."""
    body = text if text is not None else OOO_TEXT[lang]
    seed = int(hashlib.sha256(f"sieve{from_addr}{subject}".encode()).hexdigest()[:8], 16)
    message = EmailMessage()
    message["X-Sieve"] = "Pigeonhole Sieve 0.5.19 (4eae2f79)"
    message["Message-ID"] = f"<dovecot-sieve-{seed}-607109-0@mx1.prospect.example>"
    message["Date"] = DATE
    message["From"] = from_addr
    message["To"] = to_addr
    message["Subject"] = f"Auto: {subject}"
    _thread(message, in_reply_to)
    message["Auto-Submitted"] = "auto-replied (vacation)"
    message["Precedence"] = "bulk"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(body, cte="8bit")
    return message


def outlook_reply(
    text: str = "Hi Bob,\n\nyes, Tuesday at 10:00 works for us. Please send the contract beforehand.",
    *,
    from_addr: str = DEFAULT_FROM,
    to_addr: str = DEFAULT_TO,
    subject: str = DEFAULT_SUBJECT,
    in_reply_to: str = DEFAULT_IN_REPLY_TO,
    quoted: str = "Hello Anna,\nwould a short call next week suit you?\nBob",
) -> EmailMessage:
    """An ordinary Outlook reply by a person: ``RE:``, the quoted original below an Outlook header block,
    and ``X-Auto-Response-Suppress`` (which Outlook puts on ordinary mail too)."""
    body = (
        f"{text}\n\nKind regards,\nAnna Example\nHead of Purchasing, Prospect Ltd\n\n"
        "________________________________\n"
        f"From: {to_addr}\nSent: Thursday, December 3, 2026 09:00\nTo: {from_addr}\nSubject: {subject}\n\n"
        f"{quoted}\n"
    )
    message = EmailMessage()
    message["From"] = from_addr
    message["To"] = to_addr
    message["Subject"] = f"RE: {subject}"
    message["Thread-Topic"] = subject
    message["Date"] = DATE
    message["Message-ID"] = "<DB9PR01MB7345ABCDEF@DB9PR01MB7345.eurprd01.prod.exchangelabs.com>"
    _thread(message, in_reply_to)
    message["X-MS-Has-Attach"] = ""
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(body)
    return message


def gmail_reply(
    text: str = "Hi Bob,\n\nsounds good, let's talk on Tuesday.",
    *,
    from_addr: str = DEFAULT_FROM,
    to_addr: str = DEFAULT_TO,
    subject: str = DEFAULT_SUBJECT,
    in_reply_to: str = DEFAULT_IN_REPLY_TO,
    quoted: str = "Hello Anna,\nwould a short call next week suit you?\nBob",
) -> EmailMessage:
    """An ordinary Gmail reply by a person: ``Re:``, "On ... wrote:" and ``>``-quoted history."""
    quote = "\n".join(f"> {line}" for line in quoted.split("\n"))
    body = f"{text}\n\nOn Thu, Dec 3, 2026 at 9:00 AM {to_addr} wrote:\n\n{quote}\n"
    message = EmailMessage()
    message["MIME-Version"] = "1.0"
    message["From"] = from_addr
    message["Date"] = DATE
    message["Message-ID"] = "<CAJ+humanreply0123456789@mail.gmail.com>"
    message["Subject"] = f"Re: {subject}"
    message["To"] = to_addr
    _thread(message, in_reply_to)
    message.set_content(body)
    return message
