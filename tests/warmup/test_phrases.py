"""The phrase bank: many different messages, plain text, the same message for the same seed, and no
words but the bank's and the two inboxes' own names."""

from __future__ import annotations

import re

from nimbus_api.warmup import phrases

BANK = {
    *phrases.SUBJECTS,
    *phrases.OPENERS,
    *phrases.MIDDLES,
    *phrases.CLOSERS,
    *phrases.REPLY_OPENERS,
    *phrases.REPLY_MIDDLES,
    *phrases.SIGNOFFS,
}


def test_a_seed_gives_one_message_and_seeds_give_many() -> None:
    first = phrases.compose(42, sender_name="Ada", recipient_name="Grace")
    assert first == phrases.compose(42, sender_name="Ada", recipient_name="Grace")
    texts = {phrases.compose(seed, sender_name="Ada", recipient_name="Grace") for seed in range(500)}
    assert len({t.body for t in texts}) > 450  # nearly every seed its own body
    assert len({t.subject for t in texts}) == len(phrases.SUBJECTS)  # every subject is used
    replies = {phrases.compose_reply(s, subject="Catching up", sender_name="G", recipient_name="A") for s in range(200)}
    assert len({r.body for r in replies}) > 150
    assert {r.subject for r in replies} == {"Re: Catching up"}
    assert phrases.compose_reply(1, subject="Re: RE: Catching up", sender_name="", recipient_name="").subject == (
        "Re: Catching up"
    )


def test_plain_conversational_text_without_anything_of_a_workspace() -> None:
    for seed in range(300):
        text = phrases.compose(seed, sender_name="Ada", recipient_name="Grace")
        lines = text.body.splitlines()
        assert re.fullmatch(r"(Hi|Hello|Hey|Good morning) (Grace|there),|Hello,|Grace,", lines[0]), lines[0]
        assert lines[-1] == "Ada" and lines[-2] in phrases.SIGNOFFS
        assert not re.search(r"<[a-z/]|https?://|\{\{|\{name\}|@", text.body)  # no HTML, links, placeholders
        assert text.body.isascii() and 80 < len(text.body) < 800
        # every sentence of the body comes from the bank: no other words can be in a warmup message
        body = " ".join(lines[2:-2])
        for sentence in re.findall(r"[^.?!]+[.?!]", body):
            assert sentence.strip() in BANK, sentence


def test_first_names_come_from_the_inbox_only() -> None:
    assert phrases.first_name("ada lovelace", "x@example.test") == "Ada"
    assert phrases.first_name(None, "grace.hopper@example.test") == "Grace"
    assert phrases.first_name("", "123@example.test") == ""
    text = phrases.compose(7, sender_name="", recipient_name="")
    assert "{" not in text.body and text.body.splitlines()[0] in {"Hi there,", "Hello,"}


def test_the_planned_subject_is_the_composed_one() -> None:
    for seed in range(200):
        assert phrases.subject_of(seed) == phrases.compose(seed, sender_name="A", recipient_name="B").subject
