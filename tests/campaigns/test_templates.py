"""Step templates: what they substitute, what they refuse at save time, and what contact data cannot do
at send time (a line break in the subject)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from nimbus_api.campaigns.templates import (
    SubjectLineBreak,
    TemplateProblem,
    check_template,
    compile_step,
    render_step,
)


@dataclass
class Step:
    subject_template: str
    text_template: str = "Hi"
    html_template: str | None = None


@dataclass
class Person:
    email: str = "grace@example.com"
    first_name: str | None = "Grace"
    last_name: str | None = "Hopper"
    company: str | None = "Navy"
    fields: Mapping[str, Any] = field(default_factory=dict)


URL = "https://api.example/u/token123"


def test_substitutes_contact_fields_custom_fields_and_the_unsubscribe_url() -> None:
    rendered = render_step(
        Step(
            subject_template="{{ contact.first_name }} at {{ contact.company }}",
            text_template="Dear {{ contact.first_name }} {{ contact.last_name }} ({{ contact.email }}),\n"
            "how is {{ contact.fields.city }}?\n{{ unsubscribe_url }}\n",
            html_template="<p>{{ contact.fields['city'] | upper }}</p><a href=\"{{ unsubscribe_url }}\">x</a>",
        ),
        Person(fields={"city": "Arlington"}),
        URL,
    )
    assert rendered.subject == "Grace at Navy"
    assert rendered.text == f"Dear Grace Hopper (grace@example.com),\nhow is Arlington?\n{URL}\n"
    assert rendered.html == f'<p>ARLINGTON</p><a href="{URL}">x</a>'


def test_missing_values_render_empty_so_fallbacks_work() -> None:
    person = Person(first_name=None, company=None, fields={})
    rendered = render_step(
        Step(
            subject_template="Hi {{ contact.first_name or 'there' }}",
            text_template="[{{ contact.fields.unknown_field }}] {{ contact.fields.city | default('your city', true) }}",
        ),
        person,
        URL,
    )
    assert rendered.subject == "Hi there"
    assert rendered.text == "[] your city"


def test_html_is_autoescaped_and_text_and_subject_are_not() -> None:
    person = Person(first_name="<b>Bold</b>", fields={"note": "a & b"})
    rendered = render_step(
        Step(
            subject_template="{{ contact.first_name }}",
            text_template="{{ contact.first_name }} {{ contact.fields.note }}",
            html_template="<p>{{ contact.first_name }} {{ contact.fields.note }}</p>",
        ),
        person,
        URL,
    )
    assert rendered.subject == "<b>Bold</b>"
    assert rendered.text == "<b>Bold</b> a & b"
    assert rendered.html == "<p>&lt;b&gt;Bold&lt;/b&gt; a &amp; b</p>"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ foo }}", "unknown variable 'foo'"),
        ("{% if false %}{{ hidden }}{% endif %}", "unknown variable 'hidden'"),
        ("{{ contact.phone }}", "contact.phone is not a contact attribute"),
        ("{{ contact['phone'] }}", "contact.phone is not a contact attribute"),
        ("{{ contact }}", "not contact"),
        ("{{ contact.first_name", "line 1"),
        ("{% if contact.email %}", "line 1"),
        ("{% for x in [1, 2] %}{{ x }}{% endfor %}", "loops are not supported"),
        ("{{ 'x' * 1000000000 }}", "the * operator"),
        ("{{ 9 ** 9 ** 9 }}", "the ** operator"),
        ("{{ '%999999999d' % 1 }}", "the % operator"),
        ("{{ contact.email.ljust(1000000000) }}", "calls are not supported"),
        ("{{ range(10) }}", "calls are not supported"),
        ("{% macro m() %}{{ m() }}{% endmacro %}", "macros are not supported"),
        ("{% include 'other' %}", "includes are not supported"),
        ("{% extends 'base' %}", "inheritance is not supported"),
        ("{{ contact.email | safe }}", "filter 'safe' is not available"),
        ("{{ contact.email | center(1000000000) }}", "filter 'center' is not available"),
        ("{% autoescape false %}{{ contact.email }}{% endautoescape %}", "autoescape blocks"),
        ("{{ contact.fields._values }}", "unsafe"),
        ("{{ contact.fields['_values'] }}", "cannot be rendered"),
        ("{{ contact.email[1000] }}", "cannot be rendered"),
        ("{{ 1 / 0 }}", "cannot be rendered"),
        ("{{ contact.email.__class__ }}", "unsafe"),
        ("{{ lipsum }}", "unknown variable 'lipsum'"),
    ],
)
def test_save_time_check_refuses(source: str, message: str) -> None:
    for part in ("text", "html"):
        with pytest.raises(TemplateProblem) as problem:
            check_template(part, source)
        assert message in str(problem.value), (part, str(problem.value))
        assert problem.value.part == part


@pytest.mark.parametrize("source", ["Hi\r\nBcc: victim@example.com", "line one\nline two", "{{ '\\n' }}Bcc: x"])
def test_a_subject_with_a_line_break_is_refused_at_save_time(source: str) -> None:
    with pytest.raises(SubjectLineBreak):
        check_template("subject", source)


@pytest.mark.parametrize("payload", ["Ada\r\nBcc: victim@example.com", "Ada\nX-Injected: 1", "Ada\u2028X: y", "A\x00"])
def test_contact_data_cannot_put_a_line_break_in_the_subject(payload: str) -> None:
    """Contacts saved through the API cannot hold CR/LF, but the render refuses it anyway: the subject is a
    header, and whatever a field holds, it stays one line."""
    step = Step(subject_template="Hello {{ contact.first_name }}", text_template="{{ contact.fields.x }}")
    with pytest.raises(SubjectLineBreak):
        render_step(step, Person(first_name=payload), URL)
    with pytest.raises(SubjectLineBreak):
        render_step(Step(subject_template="{{ contact.fields.x }}"), Person(fields={"x": payload}), URL)
    # the same value in a body is just text
    assert render_step(step, Person(fields={"x": payload}), URL).text == payload


def test_output_is_capped() -> None:
    big = "x" * 600
    with pytest.raises(TemplateProblem, match="renders more than 1000 characters"):
        render_step(
            Step(subject_template="{{ contact.first_name }}{{ contact.first_name }}"), Person(first_name=big), URL
        )


def test_compile_step_names_the_part_and_caches() -> None:
    with pytest.raises(TemplateProblem) as problem:
        compile_step(Step(subject_template="ok", text_template="ok", html_template="{{ nope }}"))
    assert problem.value.part == "html"
    step = Step(subject_template="Hi {{ contact.first_name }}", text_template="t", html_template=None)
    first, second = compile_step(step), compile_step(step)
    assert first.subject is second.subject
    assert first.html is None


def test_the_compiled_cache_is_bounded_by_size() -> None:
    from nimbus_api.campaigns.templates import _CompiledCache

    cache = _CompiledCache(budget_chars=10)
    marker = compile_step(Step(subject_template="x")).subject
    cache.put(("text", "aaaa"), marker)
    cache.put(("text", "bbbb"), marker)
    assert cache.get(("text", "aaaa")) is marker  # now the most recently used
    cache.put(("text", "cccc"), marker)
    assert cache.get(("text", "bbbb")) is None, "the least recently used went"
    assert cache.get(("text", "aaaa")) is marker and cache.size == 8
    cache.put(("text", "x" * 11), marker)
    assert cache.get(("text", "x" * 11)) is None, "a source over the whole budget is not kept"
