"""The built-in phrase bank: short, plain-text, conversational messages, rebuilt from a seed.

A message is a subject, a greeting, two to four body sentences (an opener, one or two middles, a closer)
and a sign-off, each drawn from its list by ``random.Random(seed)``: the same seed always gives the same
message (the row stores the seed, not the text), and the lists multiply into millions of combinations.
Nothing here comes from a workspace: the only names used are the two inboxes' own display names (first
word) and nothing else, so warmup content never carries contacts, templates or campaign text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SUBJECTS = (
    "Quick question about next week",
    "Catching up",
    "Following up on our chat",
    "Thoughts on the plan?",
    "Notes from today",
    "Coffee sometime?",
    "A small update",
    "Checking in",
    "About Thursday",
    "Ideas for the next step",
    "Re-reading your notes",
    "Weekend plans",
    "Can we move our call?",
    "One more thing",
    "Trying something new",
    "How did it go?",
    "The article I mentioned",
    "Timeline check",
)
GREETINGS = ("Hi {name},", "Hello {name},", "Hey {name},", "Good morning {name},", "Hi there,", "Hello,", "{name},")
OPENERS = (
    "I hope your week is going well.",
    "Thanks again for the quick reply last time.",
    "I was just thinking about what you said the other day.",
    "It was good to hear from you.",
    "I finally had a moment to sit down and write this.",
    "Sorry for the slow answer, it has been a busy few days.",
    "I wanted to follow up on our last conversation.",
    "Hope you had a good weekend.",
    "I came across something that reminded me of you.",
)
MIDDLES = (
    "I put together a few notes and they look promising.",
    "Would Tuesday or Wednesday work better for a short call?",
    "The first draft is done, and I am fairly happy with how it reads.",
    "We tried the new approach and it saved us a lot of time.",
    "I am still weighing the two options we talked about.",
    "The team liked the idea, so we will give it a try next month.",
    "I read the piece you sent and found the second half very useful.",
    "There is no rush on this, whenever you have a minute is fine.",
    "I moved the meeting to the afternoon so we have more time.",
    "Let me know if anything in the plan looks off to you.",
    "I think a simpler version would work just as well.",
    "The numbers from last week look better than expected.",
    "I have a couple of questions, but nothing urgent.",
    "It turned out to be easier than I thought.",
)
CLOSERS = (
    "What do you think?",
    "Let me know how that sounds.",
    "Talk soon.",
    "Looking forward to hearing from you.",
    "Happy to chat more if that helps.",
    "Does that work for you?",
    "Curious to hear your take.",
    "Thanks in advance.",
)
REPLY_OPENERS = (
    "Thanks for writing.",
    "Good to hear from you.",
    "That sounds good to me.",
    "Thanks, this is helpful.",
    "Great, thanks for the update.",
    "Appreciate you following up.",
    "Makes sense.",
)
REPLY_MIDDLES = (
    "Tuesday works well for me.",
    "I agree, the simpler version is probably the way to go.",
    "I will take a closer look this afternoon.",
    "Let us keep it as it is for now and see how it goes.",
    "I had the same thought when I read it.",
    "No rush at all on my side either.",
    "I will send over my notes later this week.",
    "Glad it turned out easier than expected.",
)
SIGNOFFS = ("Best,", "Thanks,", "Cheers,", "All the best,", "Talk soon,", "Warm regards,", "Regards,", "Take care,")


@dataclass(frozen=True)
class Text:
    subject: str
    body: str


def first_name(display_name: str | None, email: str) -> str:
    """The first word of a display name, else the address's local part (letters only), capitalised."""
    word = (display_name or "").strip().split(" ")[0].strip(",.;:\"'")
    if not word:
        local = email.partition("@")[0]
        word = "".join(ch for ch in local.split(".")[0] if ch.isalpha())
    return word[:40].capitalize() if word else ""


def _greeting(rng: random.Random, name: str) -> str:
    choices = GREETINGS if name else tuple(g for g in GREETINGS if "{name}" not in g)
    return rng.choice(choices).format(name=name)


def subject_of(seed: int) -> str:
    """The subject ``compose(seed)`` gives (its first draw), without composing the body."""
    return random.Random(seed).choice(SUBJECTS)  # noqa: S311 - variety, not secrecy


def compose(seed: int, *, sender_name: str, recipient_name: str) -> Text:
    """A thread's first message."""
    rng = random.Random(seed)  # noqa: S311 - variety, not secrecy
    subject = rng.choice(SUBJECTS)
    middles = rng.sample(MIDDLES, rng.randint(1, 2))
    sentences = [rng.choice(OPENERS), *middles, rng.choice(CLOSERS)]
    return Text(subject=subject, body=_layout(rng, recipient_name, sentences, sender_name))


def compose_reply(seed: int, *, subject: str, sender_name: str, recipient_name: str) -> Text:
    """An answer in thread: ``Re:`` the subject (once), a short body."""
    rng = random.Random(seed)  # noqa: S311 - variety, not secrecy
    sentences = [rng.choice(REPLY_OPENERS), *rng.sample(REPLY_MIDDLES, rng.randint(1, 2))]
    if rng.random() < 0.5:
        sentences.append(rng.choice(CLOSERS))
    base = subject.strip()
    while base.lower().startswith("re:"):
        base = base[3:].strip()
    return Text(subject=f"Re: {base}", body=_layout(rng, recipient_name, sentences, sender_name))


def _layout(rng: random.Random, recipient_name: str, sentences: list[str], sender_name: str) -> str:
    greeting = _greeting(rng, recipient_name)
    if rng.random() < 0.5:
        paragraphs = [" ".join(sentences)]
    else:
        cut = rng.randint(1, len(sentences) - 1)
        paragraphs = [" ".join(sentences[:cut]), " ".join(sentences[cut:])]
    signoff = rng.choice(SIGNOFFS)
    lines = [greeting, "", *("\n\n".join(paragraphs).split("\n")), "", signoff]
    if sender_name:
        lines.append(sender_name)
    return "\n".join(lines) + "\n"
