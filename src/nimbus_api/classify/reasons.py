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

import functools
import re
from dataclasses import dataclass

from nimbus_api.classify.needles import may_match, needles
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


_UPPER_RE = re.compile(r"(?<!\\)[A-Z]")


_LEADING_WORD_BOUNDARY_RE = re.compile(r"(^|\|)\\b([a-z]+)")


def _p(regex: str) -> re.Pattern[str]:
    """A phrase regex, matched against lower-cased text.

    Its letters are lowered (escapes such as ``\\S`` kept) instead of compiling with ``re.I``, and a
    leading ``\\bword`` becomes ``word(?<!\\wword)``: both keep a literal prefix the regex engine
    can scan for, several times faster on long reports.
    """
    regex = _UPPER_RE.sub(lambda m: m.group(0).lower(), regex)
    regex = _LEADING_WORD_BOUNDARY_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}(?<!\\w{m.group(2)})", regex)
    return re.compile(regex)


_ANY = frozenset({"*"})
#: Wording is looked for in the first this-many characters of a diagnostic or report.
_PHRASE_SCAN = 3000
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
    StatusRule("status-x.2.1", "*.2.1", "suspend", frozenset({"filtered", "mailboxfull", "userunknown"})),
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

#: Diagnostic wording per reason: (name, reason, regex); first match wins. Keep each regex linear
#: (no nested quantifiers, bounded gaps) so that no text can make it backtrack.
# fmt: off
_PHRASES: tuple[tuple[str, str, str], ...] = (
    ("phrase-not-rfc-compliant", "notcompliantrfc",
     r"rfc ?5322|rfc ?2822|rfc ?822\b|not (?:rfc[- ]?)?compliant|non-?compliant|duplicate header|"
     r"multiple (?:\S+ ){0,3}?(?:addresses in )?(?:from|to|subject|message-id|date)[: ]|bare lf|bare line ?feed|"
     r"(?:header|headers) (?:are |is )?(?:invalid|missing|malformed)|missing (?:required )?header"),
    ("phrase-mailer-error", "mailererror",
     r"mailer error|unknown mailer|procmail|command died|pipe to |program failed|exit (?:status|"
     r"code) \d|local mailer|delivery program"),
    ("phrase-directory-lookup", "userunknown",
     r"recipient name is not recognized|not listed in (?:the )?(?:domino )?directory|"
     r"not listed in public name|^unknown user: |address lookup failed|invalid final delivery userid|"
     r"user doesn't have an? \S+ account|address couldn't be found|\*\* address not found \*\*"),
    ("phrase-dns-temporary", "networkerror",
     r"host not found, try again|name service error for domain|temporary (?:dns|lookup) failure|"
     r"dns (?:lookup )?(?:timeout|servfail)"),
    ("phrase-spam-classification", "spamdetected",
     r"spam classification|rejected (?:due to|as|for) spam|identified as spam|classified as spam|"
     r"detected as spam|considered (?:as )?spam|looks like spam|spam score|spam content"),
    ("phrase-expired", "expired",
     r"retry timeout exceeded|retry time not reached for any host|message expired|"
     r"delivery time expired|queue ?time exceeded|could not be delivered for \d+ days|"
     r"maximum time expired|exceeded the max(?:imum)? time|was not delivered after|"
     r"retry limit exceeded|message timed out|delivery expired|could not be delivered within|"
     r"not delivered within|TTL expired|aborted after \d|did not accept our requests to connect"),
    ("phrase-spam-content", "spamdetected",
     r"blacklisted (?:url|link)|\buribl\b|\bsurbl\b"),
    ("phrase-auth-spf-dkim-dmarc", "authfailure",
     r"\bSPF\b|sender policy framework|\bDMARC\b|\bDKIM\b|not pass authentication|"
     r"authentication (?:check )?fail|unauthenticated (?:email|mail)|does not designate|not designated|"
     r"sender (?:domain )?is not authorized|domain-based message authentication"),
    ("phrase-ptr-reverse-dns", "requireptr",
     r"\bPTR\b|reverse dns|reverse (?:lookup|hostname|DNS lookup)|no rDNS|(?:cannot|can't|could not|"
     r"couldn't) find your hostname|not have a reverse|rdns (?:lookup|check)|(?:ip|"
     r"client) (?:address )?has no (?:ptr|host ?name)|unresolvable (?:ip|host)|"
     r"not resolve (?:your )?(?:ip|address)|reverse mapping"),
    ("phrase-reputation", "badreputation",
     r"user complaints|\breputation\b|sender score|senderscore|low (?:ip )?quality|poor (?:ip )?quality"),
    ("phrase-virus", "virusdetected",
     r"\bvirus\b|malware|infected|trojan|worm detected"),
    ("phrase-relay-denied", "norelaying",
     r"relay(?:ing)? (?:access )?denied|relay(?:ing)? not (?:permitted|allowed)|not permitted to relay|"
     r"unable to relay|we do not relay|(?:configured|allowed) to relay|relay not allowed|"
     r"not a local domain|no relaying|does not relay|is not a gateway|relay prohibited|relay access"),
    ("phrase-too-many-connections", "toomanyconn",
     r"too many(?<!sent to too many) (?:connections|sessions|concurrent|recipients)|connection (?:rate )?limit|"
     r"too many simultaneous|concurrent connections|frequency limited"),
    ("phrase-recipient-access-denied", "userunknown",
     r"recipient address rejected: access denied"),
    ("phrase-blocklist", "blocked",
     r"blocked using|smtp server of your isp|invalid ip for sending|\bspamhaus\b|\bspamcop\b|"
     r"\bbarracuda\b|\bsorbs\b|blacklist|blocklist|black list|"
     r"block list|\bRBL\b|\bDNSBL\b|\bDUL\b|dynamic ip|dialup|dial-up|listed(?<!not listed) (?:at|in|on|by)|"
     r"client host \S+ blocked|(?:ip|address) (?:is |has been )?blocked|connection (?:refused|"
     r"rejected) by|blocked by|has been blocked|rejected by policy from|banned|not allowed to send|"
     r"refused to talk|mail server (?:ip )?(?:address )?is blocked|poor reputation|sender ip|your ip|"
     r"client ip|host rejected|administrative prohibition|block(?:ed)? for spam"),
    ("phrase-rate-limit", "speeding",
     r"rate limit|ratelimit|too many (?:messages|emails|mails)|sent to too many recipients|"
     r"sending rate|throttl|too fast|too much mail|slow down"),
    ("phrase-mailbox-full", "mailboxfull",
     r"mailbox exceeds allowed size|mailbox (?:is )?full|over ?quota|quota (?:exceeded|exceed|full|"
     r"violation)|exceed(?:s|ed|"
     r"ing)? (?:the |its |his |her )?(?:storage |mailbox |disk )?(?:quota|size limit|storage)|"
     r"mailbox (?:size )?limit|insufficient (?:disk )?space|not enough (?:storage|space)|"
     r"mail ?box (?:has )?exceeded|full mailbox|mailfolder is full|user is over|out of storage|"
     r"storage (?:space )?(?:is )?full|is over (?:the )?(?:allowed )?quota|mailbox would exceed|"
     r"account is full|inbox is full|no space left|mailbox has no space|quota limit|disk quota"),
    ("phrase-message-too-big", "mesgtoobig",
     r"message (?:is )?too (?:big|large)|(?:message|mail) size exceeds|"
     r"exceeds (?:the )?(?:maximum )?(?:message )?size|size limit exceeded|message length exceeds|"
     r"larger than (?:the )?(?:current )?(?:system )?limit"),
    ("phrase-has-moved", "hasmoved",
     r"has moved|address (?:has )?changed|no longer (?:uses|using)|forwarding address"),
    ("phrase-sender-rejected", "rejected",
     r"sender (?:address )?(?:rejected|refused|denied|invalid|unknown)|domain of sender address|"
     r"sender domain|purported responsible address|from: domain is invalid"),
    ("phrase-suspended", "suspend",
     r"suspended|inactive|disabled|deactivated|frozen|temporar(?:y|ily) locked|account (?:has been |"
     r"is )?(?:locked|closed|expired)|mailbox (?:is )?(?:closed|inactive)|not (?:an )?active|"
     r"no longer active|account (?:is )?on hold|mailbox not active|is no longer available|put on hold"),
    ("phrase-null-mx", "notaccept",
     r"null mx|does not accept (?:any )?mail|not accept(?:ing)? (?:any )?(?:e-?)?mail|accepts no mail|"
     r"no mail(?: service)? (?:for|at) this domain|doesn.t receive (?:e-?)?mail|domain does not receive|"
     r"indicated no smtp service|couldn't find a mail exchanger|no mx record found"),
    ("phrase-domain-does-not-exist", "hostunknown",
     r"(?<![@\w.-])[a-z0-9-]+(?:\.[a-z0-9-]+)+ does not exist"),
    ("phrase-user-unknown", "userunknown",
     r"user unknown|unknown user|no such (?:user|mailbox|recipient|address|account|local user|person)|"
     r"(?:user|mailbox|recipient|address|account|addressee) (?:\S+ )?(?:does not|doesn't|"
     r"did not) exist|does not exist|doesn't exist|not exist|unknown (?:recipient|mailbox|address|"
     r"local part|alias)|(?:recipient|user|mailbox|address|addressee) (?:is )?(?:unknown|invalid|"
     r"not found)|invalid (?:recipient|mailbox|address|user)|mailbox unavailable|mailbox not found|"
     r"(?:user|recipient|mailbox|address) not (?:found|known|listed|valid)|not a valid (?:user|mailbox|"
     r"recipient)|no mailbox (?:here|by that name|for)|not our customer|"
     r"no valid recipients|bad destination mailbox|(?:account|mailbox) (?:is )?unavailable|"
     r"recipient (?:address )?rejected|address rejected(?<!sender address rejected)|user not found|no user|"
     r"sorry, no mailbox|has no account|cannot be found|could not be found|name not recognized|"
     r"unknown local|addressee unknown|undeliverable address|mailbox (?:name )?(?:not allowed|invalid)|"
     r"illegal alias|user doesn.t have|we do not have a user|no account by that name"),
    ("phrase-host-unknown", "hostunknown",
     r"host unknown|unknown host|unrouteable address|"
     r"domain (?:name )?not found|host not found|name or service not known|"
     r"no such (?:domain|host)|(?:domain|host) (?:does not|doesn't) exist|unrouteable mail domain|"
     r"unroutable domain|domain (?:is )?(?:unknown|invalid)|no (?:mx|mail exchanger|dns) (?:record|"
     r"entry|host)|nxdomain|host or domain name not found|unknown domain|invalid domain|dns error|"
     r"(?:domain|host) lookup failed|host name lookup failure|hostname lookup"),
    ("phrase-spam", "spamdetected",
     r"\bspam\b|\bUBE\b|unsolicited|junk mail|bulk mail|content (?:was |has been )?(?:identified|"
     r"flagged)|message content rejected|spamassassin|content filter"),
    ("phrase-policy", "policyviolation",
     r"\bpolicy\b|polic(?:ies|y) violation|prohibited|not allowed|blocked because its content|"
     r"violat(?:es|ion)|blocked attachment|attachment (?:type )?(?:not allowed|rejected)"),
    ("phrase-security", "securityerror",
     r"starttls|\bTLS\b|encryption (?:required|needed)|certificate|insecure|authentication required|"
     r"must (?:authenticate|issue a STARTTLS)|security"),
    ("phrase-syntax", "syntaxerror",
     r"syntax error|command (?:not )?(?:recognized|unrecognized)|improper sequence|"
     r"bad sequence of commands|invalid command|unrecognized command|line too long"),
    ("phrase-filtered", "filtered",
     r"\bfilter(?:ed)?\b|rejected by (?:the )?recipient|recipient (?:has )?(?:rejected|refused)|"
     r"not authorized to (?:send|receive)|does not accept mail from|refused by (?:the )?recipient|"
     r"restricted|refused mail from|only accepts mail from|allow ?list|white ?list|not on the list|"
     r"moderat(?:ed|or)|members only|not a member|permission denied|forbidden"),
    ("phrase-system-full", "systemfull",
     r"disk full|file system full|insufficient system storage|out of disk"),
    ("phrase-network", "networkerror",
     r"connection (?:timed out|refused|reset|lost|closed)|network (?:error|unreachable)|(?:host|"
     r"server) unreachable|no route to host|could not connect|unable to connect|cannot connect|"
     r"lost connection|timed out|hop count exceeded|too many hops|mail loop|loop(?:ing)? detected|"
     r"routing loop|dns (?:lookup )?(?:failure|timeout)|temporary lookup failure|temporary dns|servfail"),
    ("phrase-system-error", "systemerror",
     r"system error|internal (?:server )?error|server error|local error|"
     r"temporary (?:local )?(?:problem|failure)|service (?:not available|unavailable)|"
     r"system (?:is )?(?:not available|unavailable)|resources? (?:temporarily )?unavailable|"
     r"misconfigur|configuration error|i/o error|could not load"),
    ("phrase-gave-up", "expired",
     r"i'm not going to try again|too long in (?:the )?queue|giving up|has been delayed|"
     r"delivery attempts will continue|unable to deliver (?:the )?message after"),
    ("phrase-rejected", "rejected",
     r"rejected|refused|denied|not accepted|unable to (?:deliver|accept)|undeliverable"),
)
# fmt: on
PHRASE_TABLE: tuple[PhraseRule, ...] = tuple(PhraseRule(name, _p(regex), reason) for name, reason, regex in _PHRASES)

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


@functools.lru_cache(maxsize=512)
def status_rule(status: str) -> StatusRule | None:
    """The first ``STATUS_TABLE`` row for ``status`` (a handful of codes recur: computed once each)."""
    if not status:
        return None
    suffix = status[status.index(".") :] if "." in status else ""
    for rule in STATUS_TABLE:
        if rule.code == status or (rule.code.startswith("*") and rule.code[1:] == suffix):
            return rule
    return None


def phrase_rule(text: str) -> PhraseRule | None:
    """The first ``PHRASE_TABLE`` row whose wording occurs in ``text`` (case-insensitive)."""
    if not text:
        return None
    index = _phrase_index(text[:_PHRASE_SCAN].lower())
    return PHRASE_TABLE[index] if index >= 0 else None


@functools.lru_cache(maxsize=64)
def _phrase_index(lowered: str) -> int:
    for index, rule in enumerate(PHRASE_TABLE):
        needles = _PHRASE_NEEDLES[index]
        if needles is not None:
            for needle in needles:
                if needle in lowered:
                    break
            else:
                continue  # none of the literals every match of this row contains: it cannot match
        if rule.pattern.search(lowered):
            return index
    return -1


#: Per ``PHRASE_TABLE`` row, the literals one of which each of its matches contains.
_PHRASE_NEEDLES: tuple[tuple[str, ...] | None, ...] = tuple(needles(rule.pattern) for rule in PHRASE_TABLE)


#: The SMTP command a rejection answered: a recipient refused after DATA was refused by a filter,
#: whatever the wording says (sisimai's "filtered"), not because the address is unknown.
COMMAND_RE = _p(
    r"in reply to (?:end of )?(DATA|RCPT TO|MAIL FROM|HELO|EHLO)\b|>>> ?(DATA|RCPT TO|MAIL FROM|HELO|EHLO)\b|"
    r"after (?:end of )?(DATA|RCPT TO|MAIL FROM|RCPT|MAIL)\b|"
    r"(?:most progress was|for) (RCPT TO|DATA|MAIL FROM) response|\[(RCPT_TO|MAIL_FROM|DATA)\]|"
    r"SMTP:(RCPT|MAIL|DATA)\b|-{3,}SMTP command (DATA|RCPT TO|MAIL FROM)\b"
)
#: The SMTP command is looked for in the first this-many characters.
_COMMAND_SCAN = 6000
_COMMANDS = {"RCPT": "RCPT TO", "RCPT_TO": "RCPT TO", "MAIL": "MAIL FROM", "MAIL_FROM": "MAIL FROM"}


_COMMAND_NEEDLES = needles(COMMAND_RE)
_TRANSCRIPT_ANSWER_RE = re.compile(r"<<<\s*[45]\d\d")


def find_command(text: str) -> str:
    """The SMTP command a rejection answered (``DATA``, ``RCPT TO``...), upper-cased; ``""``.

    In a session transcript (``>>> RCPT To:<a@b>`` / ``<<< 550 ...``) it is the first command that got
    a 4xx/5xx answer: sendmail goes on to send DATA after a refused RCPT.
    """
    text = " ".join(text[:_COMMAND_SCAN].lower().split())
    if not may_match(text, _COMMAND_NEEDLES):
        return ""
    for match in COMMAND_RE.finditer(text):
        command = next(g for g in match.groups() if g).upper()
        command = _COMMANDS.get(command, command)
        if match.group(2) is None:
            return command
        following = text[match.end() : match.end() + 2000]
        answer = _TRANSCRIPT_ANSWER_RE.search(following.split(">>>", 1)[0])
        if answer is not None:
            return command
    return ""


_ABOUT_RECIPIENT = frozenset({"userunknown", "hostunknown", "filtered", "suspend", "hasmoved", "notaccept"})


def reason_for(status: str, text: str, fired: list[str] | None = None, command: str = "") -> str:
    """The reason for one recipient from its status code, diagnostic ``text`` and SMTP ``command``.

    ``fired`` (when given) receives the names of the rules used (``reason:status-x.1.1``).
    """
    reason, rule = _reason(status, text, fired)
    if command == "MAIL FROM" and reason in _ABOUT_RECIPIENT:
        # refused in answer to MAIL FROM: the server refused the sender, not this recipient
        _fire(fired, "refused-at-mail-from")
        return "rejected"
    address_code = status[1:4] == ".1."
    if rule == "phrase-user-unknown" and not address_code and command in {"DATA", ""}:
        # "550 User unknown" quoted with no x.1.x code and not in answer to RCPT TO: a filter may
        # have refused the message after reading it (sisimai's "filtered"), the address is not
        # known to be bad. The receiving system's own directory lookup stays "userunknown".
        _fire(fired, "userunknown-not-at-rcpt")
        return "filtered"
    if reason == "hostunknown" and status.startswith("4"):
        _fire(fired, "hostunknown-temporary")
        return "networkerror"
    return reason


#: Postfix's smtpd writes "<address>: Recipient address rejected: <why>" for every refusal at RCPT,
#: whatever the why (an access map's "Access denied", a policy service, a busy mailbox). With a status
#: that says policy (x.7.x), mailbox state (x.2.x) or a temporary failure, the prefix says nothing about
#: the address: the reason is read from the why alone. (Office 365 writes the same words with 5.4.1 for
#: a recipient its directory does not know: that stays ``userunknown``.)
_POSTFIX_RCPT_PREFIX = re.compile(r"recipient address rejected:?\s*", re.I)
_PREFIX_RULES = frozenset({"phrase-user-unknown", "phrase-recipient-access-denied"})


def _prefix_only(status: str, text: str, rule: PhraseRule | None) -> bool:
    if rule is None or rule.name not in _PREFIX_RULES or not _POSTFIX_RCPT_PREFIX.search(text):
        return False
    return status[1:3] in (".7", ".2") or status.startswith("4.")


def _reason(status: str, text: str, fired: list[str] | None) -> tuple[str, str]:
    """The reason, and the name of the rule that decided it."""
    by_status = status_rule(status)
    by_phrase = phrase_rule(text)
    if _prefix_only(status, text, by_phrase):
        by_phrase = phrase_rule(_POSTFIX_RCPT_PREFIX.sub("", text))
        _fire(fired, "postfix-rcpt-prefix-ignored")
    if by_status is not None and (
        by_phrase is None or not ("*" in by_status.yields_to or by_phrase.reason in by_status.yields_to)
    ):
        _fire(fired, by_status.name)
        return by_status.reason, by_status.name
    if by_phrase is not None:
        _fire(fired, by_phrase.name)
        return by_phrase.reason, by_phrase.name
    for prefix, reason in _CLASS_FALLBACK:
        if status.startswith(prefix):
            _fire(fired, f"class-{prefix}x")
            return reason, f"class-{prefix}x"
    return "undefined", ""


def is_hard(reason: str, permanent: bool) -> bool:
    """Only a permanent failure whose reason says the address is bad suppresses the contact."""
    return permanent and reason in HARD_REASONS


def _fire(fired: list[str] | None, name: str) -> None:
    if fired is not None:
        fired.append(f"reason:{name}")
