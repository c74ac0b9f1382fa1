"""Step templates: a small, sandboxed Jinja dialect that substitutes contact fields.

Variables: ``contact.email``, ``contact.first_name``, ``contact.last_name``, ``contact.company``,
``contact.fields.<name>`` (a custom field; an unknown name renders ``""``, so a contact without the field
is no error), and ``unsubscribe_url``. A missing name or company renders ``""`` too, so
``{{ contact.first_name or "there" }}`` and ``{{ contact.fields.city | default("your city", true) }}`` are
the idioms for fallbacks.

What the dialect allows: ``{{ expressions }}``, ``{% if %}``/``{% elif %}``/``{% else %}``, ``{% set %}``,
comparisons and tests, ``~`` and ``+`` concatenation, and the filters in ``ALLOWED_FILTERS``. What it
refuses when a step is saved (422 naming ``steps.N.subject|text|html``): syntax errors, any variable but
the two above, ``contact.<anything else>``, loops, macros, calls, includes and inheritance, ``*``, ``**``
and ``%`` (the ways a short template turns into gigabytes of output or minutes of CPU), ``autoescape``
blocks and unlisted filters (``safe`` among them). Without loops, calls or repetition a template renders
in time linear in its size; output is capped anyway (``MAX_OUTPUT_CHARS``).

Escaping: HTML bodies are autoescaped (contact data cannot add markup); subject and text are not.

Saving a step compiles each template and renders it against a sample contact, so whatever passes
renders for every real contact too (the template sees the same shapes); the one thing contact data can
still do is put a line break into the subject, which ``render_step`` refuses (``SubjectLineBreak``):
subjects are single lines, whatever the template and the contact hold.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from jinja2 import StrictUndefined, Template, TemplateError, nodes
from jinja2.meta import find_undeclared_variables
from jinja2.sandbox import SandboxedEnvironment

Part = Literal["subject", "text", "html"]
VARIABLES = frozenset({"contact", "unsubscribe_url"})
CONTACT_ATTRIBUTES = frozenset({"email", "first_name", "last_name", "company", "fields"})
ALLOWED_FILTERS = frozenset(
    {
        "capitalize",
        "d",
        "default",
        "e",
        "escape",
        "first",
        "last",
        "length",
        "lower",
        "striptags",
        "title",
        "trim",
        "truncate",
        "upper",
        "urlencode",
        "wordcount",
    }
)
MAX_OUTPUT_CHARS = {"subject": 1_000, "text": 1_000_000, "html": 2_000_000}
# Everything ``str.splitlines`` breaks at, and NUL: none of them may reach a Subject header.
LINE_BREAKS = frozenset("\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_LINE_BREAK = re.compile("[" + re.escape("".join(sorted(LINE_BREAKS))) + "]")
_FORBIDDEN_NODES: tuple[tuple[type[nodes.Node], str], ...] = (
    (nodes.For, "loops are not supported"),
    (nodes.Macro, "macros are not supported"),
    (nodes.CallBlock, "call blocks are not supported"),
    (nodes.Call, "function and method calls are not supported"),
    (nodes.Extends, "template inheritance is not supported"),
    (nodes.Block, "template blocks are not supported"),
    (nodes.Include, "includes are not supported"),
    (nodes.Import, "imports are not supported"),
    (nodes.FromImport, "imports are not supported"),
    (nodes.EvalContextModifier, "autoescape blocks are not supported"),
    (nodes.Mul, "the * operator is not supported"),
    (nodes.Pow, "the ** operator is not supported"),
    (nodes.Mod, "the % operator is not supported"),
)
SAMPLE_UNSUBSCRIBE_URL = "https://unsubscribe.example/u/sample-token"


class TemplateProblem(ValueError):
    """A template that cannot be saved (syntax, unknown variable, refused construct) or rendered.

    The message is written for the person who wrote the template; it never quotes contact data."""

    def __init__(self, part: Part, message: str) -> None:
        super().__init__(message)
        self.part = part
        self.message = message


class SubjectLineBreak(TemplateProblem):
    """The subject rendered with a line break (from the template or the contact's data)."""


class StepTemplates(Protocol):
    """What a step is to this module: ``models.CampaignStep`` has these attributes."""

    @property
    def subject_template(self) -> str: ...
    @property
    def text_template(self) -> str: ...
    @property
    def html_template(self) -> str | None: ...


class ContactData(Protocol):
    """What a contact is to this module: ``models.Contact`` has these attributes."""

    @property
    def email(self) -> str: ...
    @property
    def first_name(self) -> str | None: ...
    @property
    def last_name(self) -> str | None: ...
    @property
    def company(self) -> str | None: ...
    @property
    def fields(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class RenderedStep:
    subject: str
    text: str
    html: str | None


@dataclass(frozen=True)
class CompiledStep:
    subject: Template
    text: Template
    html: Template | None


class _Fields:
    """``contact.fields``: a custom field by name (attribute or item); an unknown name is ``""``."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        value = self._values.get(name)
        return "" if value is None else str(value)

    def __getitem__(self, name: object) -> str:
        if not isinstance(name, str) or name.startswith("_"):
            raise KeyError(name)
        return self.__getattr__(name)


class _Contact:
    __slots__ = ("company", "email", "fields", "first_name", "last_name")

    def __init__(self, contact: ContactData) -> None:
        self.email = contact.email
        self.first_name = contact.first_name or ""
        self.last_name = contact.last_name or ""
        self.company = contact.company or ""
        self.fields = _Fields(contact.fields or {})


@dataclass(frozen=True)
class _SampleContact:
    email: str = "ada@example.com"
    first_name: str | None = "Ada"
    last_name: str | None = "Lovelace"
    company: str | None = "Analytical Engines"
    fields: Mapping[str, Any] = field(default_factory=dict)


SAMPLE_CONTACT: ContactData = _SampleContact()


class _Sandbox(SandboxedEnvironment):
    """Attributes are readable only on the two objects templates get; nothing else is reachable."""

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return isinstance(obj, _Contact | _Fields) and not attr.startswith("_")

    def is_safe_callable(self, obj: Any) -> bool:
        return False


def _environment(*, html: bool) -> _Sandbox:
    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=html,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.clear()
    env.filters = {name: f for name, f in env.filters.items() if name in ALLOWED_FILTERS}
    return env


_ENVIRONMENTS = {"subject": _environment(html=False), "text": _environment(html=False), "html": _environment(html=True)}


def _is_contact(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "contact" and node.ctx == "load"


def _check_ast(part: Part, ast: nodes.Template) -> None:
    for node_type, message in _FORBIDDEN_NODES:
        found = next(iter(ast.find_all(node_type)), None)
        if found is not None:
            raise TemplateProblem(part, f"line {found.lineno}: {message}")
    accessed: set[int] = set()  # ids of the nodes something is read from (``x`` in ``x.y`` and ``x["y"]``)
    accesses: list[nodes.Getattr | nodes.Getitem] = [*ast.find_all(nodes.Getattr), *ast.find_all(nodes.Getitem)]
    for access in accesses:
        accessed.add(id(access.node))
        name = access.attr if isinstance(access, nodes.Getattr) else getattr(access.arg, "value", None)
        if _is_contact(access.node) and isinstance(name, str) and name not in CONTACT_ATTRIBUTES:
            raise TemplateProblem(
                part,
                f"line {access.lineno}: contact.{name} is not a contact attribute "
                f"(a custom field is contact.fields.{name})",
            )
    for name_node in ast.find_all(nodes.Name):
        if _is_contact(name_node) and id(name_node) not in accessed:
            raise TemplateProblem(
                part, f"line {name_node.lineno}: use contact.email, contact.first_name, ... not contact"
            )
    for access in ast.find_all(nodes.Getattr):
        if _is_contact(access.node) and access.attr == "fields" and id(access) not in accessed:
            raise TemplateProblem(part, f"line {access.lineno}: use contact.fields.<name>, not contact.fields")
    for found_filter in ast.find_all(nodes.Filter):
        if found_filter.name not in ALLOWED_FILTERS:
            raise TemplateProblem(
                part,
                f"line {found_filter.lineno}: filter {found_filter.name!r} is not available "
                f"(available: {', '.join(sorted(ALLOWED_FILTERS))})",
            )
    unknown = sorted(find_undeclared_variables(ast) - VARIABLES)
    if unknown:
        raise TemplateProblem(
            part,
            f"unknown variable {unknown[0]!r}: templates know contact.email, contact.first_name, "
            "contact.last_name, contact.company, contact.fields.<name> and unsubscribe_url",
        )


class _CompiledCache:
    """Compiled templates by (part, source), least recently used evicted first, bounded by the total size
    of the sources held (a count bound alone would let large templates pin a lot of memory)."""

    def __init__(self, budget_chars: int) -> None:
        self.budget = budget_chars
        self.size = 0
        self._items: OrderedDict[tuple[Part, str], Template] = OrderedDict()

    def get(self, key: tuple[Part, str]) -> Template | None:
        template = self._items.get(key)
        if template is not None:
            self._items.move_to_end(key)
        return template

    def put(self, key: tuple[Part, str], template: Template) -> None:
        if len(key[1]) > self.budget or key in self._items:
            return
        self._items[key] = template
        self.size += len(key[1])
        while self.size > self.budget:
            (_, source), _ = self._items.popitem(last=False)
            self.size -= len(source)


_CACHE = _CompiledCache(budget_chars=4_000_000)


def _compile(part: Part, source: str) -> Template:
    cached = _CACHE.get((part, source))
    if cached is not None:
        return cached
    env = _ENVIRONMENTS[part]
    try:
        ast = env.parse(source)
        _check_ast(part, ast)
        template = env.from_string(ast)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise TemplateProblem(part, f"line {line}: {exc.message}" if line else str(exc.message)) from None
    _CACHE.put((part, source), template)
    return template


def _render(part: Part, template: Template, context: Mapping[str, Any]) -> str:
    limit = MAX_OUTPUT_CHARS[part]
    chunks: list[str] = []
    size = 0
    try:
        for chunk in template.generate(context):
            size += len(chunk)
            if size > limit:
                raise TemplateProblem(part, f"renders more than {limit} characters")
            chunks.append(chunk)
    except TemplateProblem:
        raise
    except TemplateError as exc:
        raise TemplateProblem(part, f"cannot be rendered: {exc.message}") from None
    except Exception as exc:  # whatever a template does wrong is the template's problem, never a 500
        raise TemplateProblem(part, f"cannot be rendered: {type(exc).__name__}") from None
    return "".join(chunks)


def _single_line(part: Part, value: str) -> str:
    if _LINE_BREAK.search(value):
        raise SubjectLineBreak(part, "the subject must be a single line (it renders a line break)")
    return value


def compile_step(step: StepTemplates) -> CompiledStep:
    """Compile the step's templates (cached by source); raises ``TemplateProblem`` naming the part."""
    html = step.html_template
    return CompiledStep(
        subject=_compile("subject", step.subject_template),
        text=_compile("text", step.text_template),
        html=_compile("html", html) if html is not None else None,
    )


def render_step(step: StepTemplates, contact: ContactData, unsubscribe_url: str) -> RenderedStep:
    """The step for one contact (``render_subject`` and ``render_body`` together). Raises ``TemplateProblem``
    (``SubjectLineBreak`` for a subject with a line break): a step saved through the API only fails here on
    contact data with a line break."""
    text_body, html_body = render_body(step, contact, unsubscribe_url)
    return RenderedStep(subject=render_subject(step, contact, unsubscribe_url), text=text_body, html=html_body)


def render_body(step: StepTemplates, contact: ContactData, unsubscribe_url: str) -> tuple[str, str | None]:
    """The step's text and HTML for one contact (the sender's part: the subject was rendered and stored
    at dispatch). Raises ``TemplateProblem``."""
    context = {"contact": _Contact(contact), "unsubscribe_url": unsubscribe_url}
    html = step.html_template
    return (
        _render("text", _compile("text", step.text_template), context),
        _render("html", _compile("html", html), context) if html is not None else None,
    )


def render_subject(step: StepTemplates, contact: ContactData, unsubscribe_url: str) -> str:
    """The step's subject for one contact (what dispatch stores on the message); raises ``TemplateProblem``."""
    template = _compile("subject", step.subject_template)
    context = {"contact": _Contact(contact), "unsubscribe_url": unsubscribe_url}
    return _single_line("subject", _render("subject", template, context))


def check_template(part: Part, source: str) -> str:
    """Save-time check of one template: compile it and render it for ``SAMPLE_CONTACT``."""
    if part == "subject":
        _single_line(part, source)
    template = _compile(part, source)
    rendered = _render(part, template, {"contact": _Contact(SAMPLE_CONTACT), "unsubscribe_url": SAMPLE_UNSUBSCRIBE_URL})
    if part == "subject":
        _single_line(part, rendered)
    return source


__all__ = [
    "ALLOWED_FILTERS",
    "CompiledStep",
    "ContactData",
    "RenderedStep",
    "StepTemplates",
    "SubjectLineBreak",
    "TemplateProblem",
    "check_template",
    "compile_step",
    "render_body",
    "render_step",
    "render_subject",
]
