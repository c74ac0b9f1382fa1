"""Whether a relay refusal is about one recipient or about the inbox: decided by evidence, per run.

A submission server answers ``550 5.7.1`` to RCPT both when the login may not relay at all (a wrong
account, a relay that wants AUTH) and when a policy refuses one address (Postfix's
``check_recipient_access``, a provider's block list, an IDN domain it will not route). Pausing the inbox
on the first such reply let one bad contact pause a whole pool: each inbox it was handed to met it and
was paused in turn. So a relay refusal is judged by what else the run saw:

    relay refusal, and the run had a recipient accepted        -> the recipient's: that message fails
    relay refusal, nothing accepted yet                          -> suspect (held, still leased)
    a recipient accepted while suspects are held                 -> every suspect is the recipient's: fails
    suspects over RELAY_DOMAINS_TO_PAUSE distinct domains, and
        nothing accepted                                         -> the inbox's: paused, suspects handed over
    the run ends with suspects, nothing accepted                 -> ``probe``: RCPT TO the inbox's own
                                                                    address (MAIL, RCPT, RSET: nothing sent)
        own address accepted                                     -> the recipients': they fail
        own address refused for relay                            -> the inbox's: paused, suspects handed over
        the probe could not be made (connection failed)          -> suspects deferred (retried later)

"Accepted" means an RCPT was answered 2xx: a message sent, or one refused later at DATA or its final dot.
Suspects stay ``leased`` until decided, within the run (a worker that dies meanwhile leaves them to the
sweeper, which records them ``unknown``: conservative, never resent blindly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nimbus_api.sending.record import Result

RELAY_DOMAINS_TO_PAUSE = 3
"""Relay refusals for this many different recipient domains, with no recipient accepted, mean the login
cannot relay at all: no policy refuses three unrelated domains and accepts nothing."""

Verdict = Literal["recipient", "inbox"]


@dataclass
class RelayEvidence:
    """What one run of an inbox's sender has seen, shared by its lanes (one event loop: no locking)."""

    accepted: bool = False
    suspects: list[Result] = field(default_factory=list)
    decided: list[Result] = field(default_factory=list)
    """Suspects whose verdict is in, with their final outcome: recorded with the lane's next chunk."""

    def saw_accepted(self) -> None:
        """An RCPT was accepted: every suspect so far was refused for itself."""
        self.accepted = True
        if self.suspects:
            self.decide("recipient")

    def refused(self, result: Result) -> tuple[Result | None, list[Result]]:
        """A relay refusal. Returns the result to record now (the recipient's, ``failed``; None when it
        is held as a suspect), and the suspects this refusal proved to be the inbox's (``credential``;
        empty unless it reached ``RELAY_DOMAINS_TO_PAUSE`` domains)."""
        if self.accepted:
            result.outcome = "failed"
            return result, []
        self.suspects.append(result)
        domains = {s.item.to_email.rpartition("@")[2].lower() for s in self.suspects}
        return None, self.decide("inbox") if len(domains) >= RELAY_DOMAINS_TO_PAUSE else []

    def decide(self, verdict: Verdict) -> list[Result]:
        """``recipient``: the suspects fail; ``inbox``: they are handed to other inboxes (``credential``).
        Returns them (``decided`` holds them too, for recording)."""
        suspects, self.suspects = self.suspects, []
        for suspect in suspects:
            suspect.outcome = "failed" if verdict == "recipient" else "credential"
        self.decided += suspects
        return suspects

    def defer(self) -> None:
        """No verdict could be reached (the probe failed): the suspects are retried later."""
        for suspect in self.suspects:
            suspect.outcome = "transient"
        self.decided += self.suspects
        self.suspects = []

    def take_decided(self) -> list[Result]:
        decided, self.decided = self.decided, []
        return decided


__all__ = ["RELAY_DOMAINS_TO_PAUSE", "RelayEvidence", "Verdict"]
