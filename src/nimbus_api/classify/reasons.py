"""Why a recipient bounced: a reason from ``BOUNCE_REASONS``, read from its status code and wording.

Two data tables, tried in this order:

1. ``STATUS_TABLE``: enhanced status codes whose meaning is unambiguous (``5.1.1`` is an unknown
   user, ``5.2.2`` a full mailbox). Codes that cover many causes (``5.7.1``, ``5.0.0``, ``4.x.x``
   catch-alls) are deliberately absent: their reason comes from the wording.
2. ``PHRASE_TABLE``: diagnostic phrases per reason, in the spirit of sisimai's reason classes. Rows are
   tried in table order and the first match wins, so the specific (``spamhaus``, ``SPF``) come before
   the general (``rejected``). A phrase also overrides a status code whose row yields to it
   (``5.1.1`` that says "mailbox full" is a full mailbox: MTAs use 5.1.1 loosely).

When neither says anything, ``fallback_reason`` uses the status class (``4.4.x`` expired, ``5.x.x``
rejected...). ``hard`` is true only for ``HARD_REASONS``: a 5xx for policy, spam, reputation or
authentication is permanent for that message but says nothing bad about the address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nimbus_api.classify.types import HARD_REASONS

STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
REPLY_CODE_RE = re.compile(r"(?<![\d.\-])([245][0-5]\d)(?:[\s\-]|$)")


@dataclass(frozen=True, slots=True)
class StatusRule:
    """``code`` is a full code (``5.1.1``) or a class-free one (``*.1.1`` matches 4.1.1 and 5.1.1).

    ``yields_to``: phrase reasons that win over the code (MTAs use 5.1.1 loosely: a 5.1.1 that says
    "mailbox full" is a full mailbox). ``"*"`` yields to any phrase.
    """

    name: str
    code: str
    reason: str
    yields_to: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PhraseRule:
    name: str
    pattern: re.Pattern[str]
    reason: str


def _p(regex: str) -> re.Pattern[str]:
    return re.compile(regex, re.I)


_ANY = frozenset({"*"})
_NOT_ADDRESS = frozenset({"mailboxfull", "mailererror", "speeding", "toomanyconn", "systemerror", "networkerror"})

#: Enhanced status codes (RFC 3463, RFC 7505, RFC 7372, RFC 8689) whose meaning is clear enough.
STATUS_TABLE: tuple[StatusRule, ...] = (
    StatusRule("status-x.1.1", "*.1.1", "userunknown", _NOT_ADDRESS),
    StatusRule("status-x.1.2", "*.1.2", "hostunknown", _NOT_ADDRESS),
    StatusRule("status-x.1.3", "*.1.3", "userunknown", _ANY),
    StatusRule("status-x.1.4", "*.1.4", "userunknown", _ANY),
    StatusRule("status-x.1.6", "*.1.6", "hasmoved"),
    StatusRule("status-x.1.7", "*.1.7", "rejected", _ANY),
    StatusRule("status-x.1.8", "*.1.8", "rejected", _ANY),
    StatusRule("status-x.1.10", "*.1.10", "notaccept", frozenset({"userunknown", "hostunknown"})),
    StatusRule("status-x.2.1", "*.2.1", "suspend", frozenset({"filtered", "mailboxfull"})),
    StatusRule("status-x.2.2", "*.2.2", "mailboxfull"),
    StatusRule("status-x.2.3", "*.2.3", "exceedlimit"),
    StatusRule("status-x.3.1", "*.3.1", "systemfull"),
    StatusRule("status-x.3.4", "*.3.4", "mesgtoobig"),
    StatusRule("status-5.4.4", "5.4.4", "hostunknown", _ANY),
    StatusRule("status-x.4.7", "*.4.7", "expired", _ANY),
    StatusRule("status-x.5.4", "*.5.4", "syntaxerror", _ANY),
    StatusRule("status-x.6.0", "*.6.0", "contenterror", _ANY),
    StatusRule("status-x.7.25", "*.7.25", "requireptr"),
    StatusRule("status-x.7.23", "*.7.23", "authfailure"),
    StatusRule("status-x.7.26", "*.7.26", "authfailure"),
    StatusRule("status-x.7.27", "*.7.27", "notaccept"),
    StatusRule("status-x.7.9", "*.7.9", "securityerror", _ANY),
    StatusRule("status-x.7.6", "*.7.6", "securityerror", _ANY),
)

#: Diagnostic wording per reason; first match wins. Keep each regex linear (no nested quantifiers).
PHRASE_TABLE: tuple[PhraseRule, ...] = (
    PhraseRule(
        "phrase-not-rfc-compliant",
        _p(
            r"rfc ?5322|rfc ?2822|rfc ?822\b|not (?:rfc[- ]?)?compliant|non-?compliant|duplicate header|"
            r"multiple (?:addresses in )?(?:from|to|subject|message-id|date)[: ]|bare lf|bare line ?feed|"
            r"(?:header|headers) (?:are |is )?(?:invalid|missing|malformed)|missing (?:required )?header"
        ),
        "notcompliantrfc",
    ),
    PhraseRule(
        "phrase-mailer-error",
        _p(
            r"mailer error|unknown mailer|procmail|command died|pipe to |program failed|"
            r"exit (?:status|code) \d|local mailer|delivery program"
        ),
        "mailererror",
    ),
    PhraseRule(
        "phrase-spam-classification",
        _p(
            r"spam classification|rejected (?:due to|as|for) spam|identified as spam|classified as spam|"
            r"detected as spam|considered (?:as )?spam|looks like spam|spam score|spam content"
        ),
        "spamdetected",
    ),
    PhraseRule(
        "phrase-expired",
        _p(
            r"retry timeout exceeded|retry time not reached for any host|message expired|"
            r"delivery time expired|queue ?time exceeded|could not be delivered for \d+ days|"
            r"has been delayed|delivery attempts will continue|giving up on|maximum time expired|"
            r"exceeded the max(?:imum)? time|too long in (?:the )?queue|was not delivered after|"
            r"retry limit exceeded|message timed out|unable to deliver (?:the )?message after|"
            r"delivery expired|i'm not going to try again|could not be delivered within|TTL expired"
        ),
        "expired",
    ),
    PhraseRule(
        "phrase-auth-spf-dkim-dmarc",
        _p(
            r"\bSPF\b|sender policy framework|\bDMARC\b|\bDKIM\b|not pass authentication|"
            r"authentication (?:check )?fail|unauthenticated (?:email|mail)|does not designate|"
            r"not designated|sender (?:domain )?is not authorized|domain-based message authentication"
        ),
        "authfailure",
    ),
    PhraseRule(
        "phrase-ptr-reverse-dns",
        _p(
            r"\bPTR\b|reverse dns|reverse (?:lookup|hostname|DNS lookup)|no rDNS|"
            r"(?:cannot|can't|could not|couldn't) find your hostname|not have a reverse|"
            r"rdns (?:lookup|check)|(?:ip|client) (?:address )?has no (?:ptr|host ?name)|"
            r"unresolvable (?:ip|host)|not resolve (?:your )?(?:ip|address)|reverse mapping"
        ),
        "requireptr",
    ),
    PhraseRule(
        "phrase-reputation",
        _p(r"\breputation\b|sender score|senderscore|low (?:ip )?quality|poor (?:ip )?quality"),
        "badreputation",
    ),
    PhraseRule("phrase-virus", _p(r"\bvirus\b|malware|infected|trojan|worm detected"), "virusdetected"),
    PhraseRule(
        "phrase-relay-denied",
        _p(
            r"relay(?:ing)? (?:access )?denied|relay(?:ing)? not (?:permitted|allowed)|"
            r"not permitted to relay|unable to relay|we do not relay|(?:configured|allowed) to relay|"
            r"relay not allowed|not a local domain|no relaying|does not relay|"
            r"is not a gateway|relay prohibited|relay access"
        ),
        "norelaying",
    ),
    PhraseRule(
        "phrase-too-many-connections",
        _p(
            r"(?<!sent to )too many (?:connections|sessions|concurrent|recipients)|connection (?:rate )?limit|"
            r"too many simultaneous|concurrent connections|frequency limited"
        ),
        "toomanyconn",
    ),
    PhraseRule("phrase-recipient-access-denied", _p(r"recipient address rejected: access denied"), "userunknown"),
    PhraseRule(
        "phrase-blocklist",
        _p(
            r"blocked using|\bspamhaus\b|\bspamcop\b|\bbarracuda\b|\bsorbs\b|blacklist|blocklist|"
            r"black list|block list|\bRBL\b|\bDNSBL\b|\bDUL\b|dynamic ip|dialup|dial-up|"
            r"listed (?:at|in|on|by)|client host \S+ blocked|(?:ip|address) (?:is |has been )?blocked|"
            r"connection (?:refused|rejected) by|blocked by|has been blocked|"
            r"rejected by policy from|banned|not allowed to send|refused to talk|"
            r"mail server (?:ip )?(?:address )?is blocked|poor reputation|sender ip|your ip|"
            r"client ip|host rejected|administrative prohibition|block(?:ed)? for spam"
        ),
        "blocked",
    ),
    PhraseRule(
        "phrase-rate-limit",
        _p(
            r"rate limit|ratelimit|too many (?:messages|emails|mails)|sent to too many recipients|"
            r"sending rate|throttl|too fast|too much mail|slow down"
        ),
        "speeding",
    ),
    PhraseRule(
        "phrase-mailbox-full",
        _p(
            r"mailbox (?:is )?full|over ?quota|quota (?:exceeded|exceed|full|violation)|"
            r"exceed(?:s|ed|ing)? (?:the |its |his |her )?(?:storage |mailbox |disk )?(?:quota|size limit|storage)|"
            r"mailbox (?:size )?limit|insufficient (?:disk )?space|not enough (?:storage|space)|"
            r"mail ?box (?:has )?exceeded|full mailbox|mailfolder is full|user is over|"
            r"out of storage|storage (?:space )?(?:is )?full|is over (?:the )?(?:allowed )?quota|"
            r"mailbox would exceed|account is full|inbox is full|no space left|mailbox has no space|"
            r"quota limit|disk quota"
        ),
        "mailboxfull",
    ),
    PhraseRule(
        "phrase-message-too-big",
        _p(
            r"message (?:is )?too (?:big|large)|(?:message|mail) size exceeds|exceeds (?:the )?"
            r"(?:maximum )?(?:message )?size|size limit exceeded|message length exceeds|"
            r"larger than (?:the )?(?:current )?(?:system )?limit"
        ),
        "mesgtoobig",
    ),
    PhraseRule(
        "phrase-has-moved",
        _p(r"has moved|address (?:has )?changed|no longer (?:uses|using)|forwarding address"),
        "hasmoved",
    ),
    PhraseRule(
        "phrase-sender-rejected",
        _p(
            r"sender (?:address )?(?:rejected|refused|denied|invalid|unknown)|domain of sender address|"
            r"sender domain|purported responsible address"
        ),
        "rejected",
    ),
    PhraseRule(
        "phrase-suspended",
        _p(
            r"suspended|inactive|disabled|deactivated|frozen|temporar(?:y|ily) locked|"
            r"account (?:has been |is )?(?:locked|closed|expired)|"
            r"mailbox (?:is )?(?:closed|inactive)|not (?:an )?active|no longer active|"
            r"account (?:is )?on hold|mailbox not active|is no longer available|put on hold"
        ),
        "suspend",
    ),
    PhraseRule(
        "phrase-null-mx",
        _p(
            r"null mx|does not accept (?:any )?mail|not accept(?:ing)? (?:any )?(?:e-?)?mail|accepts no mail|"
            r"no mail(?: service)? (?:for|at) this domain|doesn.t receive (?:e-?)?mail|domain does not receive"
        ),
        "notaccept",
    ),
    PhraseRule(
        "phrase-user-unknown",
        _p(
            r"user unknown|unknown user|no such (?:user|mailbox|recipient|address|account|local user|person)|"
            r"(?:user|mailbox|recipient|address|account|addressee) (?:\S+ )?(?:does not|doesn't|did not) exist|"
            r"does not exist|doesn't exist|not exist|unknown (?:recipient|mailbox|address|local part|alias)|"
            r"(?:recipient|user|mailbox|address|addressee) (?:is )?(?:unknown|invalid|not found)|"
            r"invalid (?:recipient|mailbox|address|user)|mailbox unavailable|mailbox not found|"
            r"(?:user|recipient|mailbox|address) not (?:found|known|listed|valid)|"
            r"not a valid (?:user|mailbox|recipient)|no mailbox (?:here|by that name|for)|"
            r"not our customer|unrouteable address|no valid recipients|bad destination mailbox|"
            r"(?:account|mailbox) (?:is )?unavailable|recipient (?:address )?rejected|(?<!sender )address rejected|"
            r"user not found|no user|sorry, no mailbox|has no account|"
            r"cannot be found|could not be found|name not recognized|unknown local|"
            r"addressee unknown|undeliverable address|mailbox (?:name )?(?:not allowed|invalid)|"
            r"illegal alias|user doesn.t have|we do not have a user|no account by that name"
        ),
        "userunknown",
    ),
    PhraseRule(
        "phrase-host-unknown",
        _p(
            r"host unknown|unknown host|domain (?:name )?not found|host not found|"
            r"name or service not known|no such (?:domain|host)|(?:domain|host) (?:does not|doesn't) exist|"
            r"unrouteable mail domain|unroutable domain|domain (?:is )?(?:unknown|invalid)|"
            r"no (?:mx|mail exchanger|dns) (?:record|entry|host)|nxdomain|"
            r"host or domain name not found|unknown domain|invalid domain|dns error|"
            r"(?:domain|host) lookup failed|host name lookup failure|hostname lookup"
        ),
        "hostunknown",
    ),
    PhraseRule(
        "phrase-spam",
        _p(
            r"\bspam\b|\bUBE\b|unsolicited|junk mail|bulk mail|"
            r"content (?:was |has been )?(?:identified|flagged)|message content rejected|"
            r"spamassassin|content filter"
        ),
        "spamdetected",
    ),
    PhraseRule(
        "phrase-policy",
        _p(
            r"\bpolicy\b|polic(?:ies|y) violation|prohibited|not allowed|blocked because its content|"
            r"violat(?:es|ion)|blocked attachment|attachment (?:type )?(?:not allowed|rejected)"
        ),
        "policyviolation",
    ),
    PhraseRule(
        "phrase-security",
        _p(
            r"starttls|\bTLS\b|encryption (?:required|needed)|certificate|insecure|"
            r"authentication required|must (?:authenticate|issue a STARTTLS)|security"
        ),
        "securityerror",
    ),
    PhraseRule(
        "phrase-syntax",
        _p(
            r"syntax error|command (?:not )?(?:recognized|unrecognized)|improper sequence|"
            r"bad sequence of commands|invalid command|unrecognized command|line too long"
        ),
        "syntaxerror",
    ),
    PhraseRule(
        "phrase-filtered",
        _p(
            r"\bfilter(?:ed)?\b|rejected by (?:the )?recipient|recipient (?:has )?(?:rejected|refused)|"
            r"not authorized to (?:send|receive)|does not accept mail from|refused by (?:the )?recipient|"
            r"restricted|refused mail from|only accepts mail from|allow ?list|white ?list|"
            r"not on the list|moderat(?:ed|or)|members only|not a member|permission denied|forbidden"
        ),
        "filtered",
    ),
    PhraseRule(
        "phrase-system-full", _p(r"disk full|file system full|insufficient system storage|out of disk"), "systemfull"
    ),
    PhraseRule(
        "phrase-network",
        _p(
            r"connection (?:timed out|refused|reset|lost|closed)|network (?:error|unreachable)|"
            r"(?:host|server) unreachable|no route to host|could not connect|unable to connect|"
            r"cannot connect|lost connection|timed out|hop count exceeded|too many hops|"
            r"mail loop|loop(?:ing)? detected|routing loop|dns (?:lookup )?(?:failure|timeout)|"
            r"temporary lookup failure|temporary dns|servfail"
        ),
        "networkerror",
    ),
    PhraseRule(
        "phrase-system-error",
        _p(
            r"system error|internal (?:server )?error|server error|local error|"
            r"temporary (?:local )?(?:problem|failure)|service (?:not available|unavailable)|"
            r"system (?:is )?(?:not available|unavailable)|resources? (?:temporarily )?unavailable|"
            r"misconfigur|configuration error|i/o error|could not load"
        ),
        "systemerror",
    ),
    PhraseRule(
        "phrase-rejected",
        _p(
            r"rejected|refused|denied|not accepted|"
            r"unable to (?:deliver|accept)|undeliverable"
        ),
        "rejected",
    ),
)

#: Reasons that say the attempt is still going on, only for 4.x.x (a 4.4.x with no wording expired).
_CLASS_FALLBACK: tuple[tuple[str, str], ...] = (
    ("4.4.", "expired"),
    ("5.4.", "networkerror"),
    ("4.2.", "mailboxfull"),
    ("5.2.", "filtered"),
    ("4.3.", "systemerror"),
    ("5.3.", "systemerror"),
    ("4.7.", "blocked"),
    ("5.7.", "securityerror"),
    ("5.5.", "syntaxerror"),
    ("5.6.", "contenterror"),
    ("5.1.", "rejected"),
    ("4.", "undefined"),
    ("5.", "rejected"),
)


def find_status(text: str) -> str:
    """The first enhanced status code (``5.1.1``) in ``text``; ``""`` when none."""
    match = STATUS_RE.search(text)
    return ".".join(match.groups()) if match else ""


def find_last_status(text: str) -> str:
    """The last specific enhanced status code in ``text`` (a relaying MTA's own code comes first, the
    remote server's after it: ``5.1.0 - Unknown address error 550-'5.7.1 ... Access denied'``)."""
    codes = [".".join(m.groups()) for m in STATUS_RE.finditer(text)]
    specific = [c for c in codes if not c.endswith(".0.0")]
    return (specific or codes or [""])[-1]


def find_reply_code(text: str) -> str:
    """The first SMTP reply code (``550``) in ``text``; ``""`` when none."""
    match = REPLY_CODE_RE.search(text)
    return match.group(1) if match else ""


def status_rule(status: str) -> StatusRule | None:
    if not status:
        return None
    suffix = status[status.index(".") :] if "." in status else ""
    for rule in STATUS_TABLE:
        if rule.code == status or (rule.code.startswith("*") and rule.code[1:] == suffix):
            return rule
    return None


def phrase_rule(text: str) -> PhraseRule | None:
    if not text:
        return None
    for rule in PHRASE_TABLE:
        if rule.pattern.search(text):
            return rule
    return None


#: The SMTP command a rejection answered: a recipient refused after DATA was refused by a filter,
#: whatever the wording says (sisimai's "filtered"), not because the address is unknown.
COMMAND_RE = re.compile(
    r"in reply to (?:end of )?(DATA|RCPT TO|MAIL FROM|HELO|EHLO)\b|>>> ?(DATA|RCPT TO|MAIL FROM|HELO|EHLO)\b|"
    r"after (?:end of )?(DATA|RCPT TO|MAIL FROM)\b",
    re.I,
)


_TRANSCRIPT_ANSWER_RE = re.compile(r"<<<\s*[45]\d\d")


def find_command(text: str) -> str:
    """The SMTP command a rejection answered (``DATA``, ``RCPT TO``...), upper-cased; ``""``.

    In a session transcript (``>>> RCPT To:<a@b>`` / ``<<< 550 ...``) it is the first command that got
    a 4xx/5xx answer: sendmail goes on to send DATA after a refused RCPT.
    """
    for match in COMMAND_RE.finditer(text):
        command = next(g for g in match.groups() if g).upper()
        if match.group(2) is None:
            return command
        following = text[match.end() : match.end() + 2000]
        answer = _TRANSCRIPT_ANSWER_RE.search(following.split(">>>", 1)[0])
        if answer is not None:
            return command
    return ""


def reason_for(status: str, text: str, fired: list[str] | None = None, command: str = "") -> str:
    """The reason for one recipient from its status code, diagnostic ``text`` and SMTP ``command``.

    ``fired`` (when given) receives the names of the rules used (``reason:status-x.1.1``).
    """
    reason, by_code = _reason(status, text, fired)
    if reason == "userunknown" and command == "DATA" and not by_code:
        # "550 Unknown user" answering DATA: a filter refused the message (a 5.1.1 still says user)
        _fire(fired, "userunknown-after-data")
        return "filtered"
    if reason == "hostunknown" and status.startswith("4"):
        _fire(fired, "hostunknown-temporary")
        return "networkerror"
    return reason


def _reason(status: str, text: str, fired: list[str] | None) -> tuple[str, bool]:
    """The reason, and whether the status code (not the wording) decided it."""
    by_status = status_rule(status)
    by_phrase = phrase_rule(text)
    if by_status is not None and (
        by_phrase is None or not ("*" in by_status.yields_to or by_phrase.reason in by_status.yields_to)
    ):
        _fire(fired, by_status.name)
        return by_status.reason, True
    if by_phrase is not None:
        _fire(fired, by_phrase.name)
        return by_phrase.reason, False
    for prefix, reason in _CLASS_FALLBACK:
        if status.startswith(prefix):
            _fire(fired, f"class-{prefix}x")
            return reason, True
    return "undefined", False


def is_hard(reason: str, permanent: bool) -> bool:
    """Only a permanent failure whose reason says the address is bad suppresses the contact."""
    return permanent and reason in HARD_REASONS


def _fire(fired: list[str] | None, name: str) -> None:
    if fired is not None:
        fired.append(f"reason:{name}")
