"""What every request body model shares, and the building blocks that keep the OpenAPI document exact.

Input is strict JSON: a boolean is not a number, a number is not a string, ``"12"`` is not an integer,
and unknown fields are an error (pydantic strict mode, ``extra="forbid"``). FastAPI validates the parsed
body in pydantic's *python* mode, where strict mode would also refuse the strings JSON carries UUIDs in,
so ids in a body are ``JsonUuid`` (a string in UUID form, as JSON can only send it). Value sets are
``Literal`` types named with ``TypeAliasType``: pydantic emits each as one schema under
``components/schemas`` referenced by ``$ref``, so a generated client has one enum class per value set.

JSON has one number type, and JSON Schema counts ``1447.0`` as an integer: a number with no fraction is
taken for an integer field (``1447.0`` is 1447), while ``1.5``, ``true`` and ``"12"`` stay refused. Every
``InputModel`` does this for the fields (and the list items) whose type is an integer and not a float.

Text fields strip surrounding whitespace (``str_strip_whitespace``, Unicode ``White_Space``); the checks
that the document declares (line breaks, lengths) are made on the text as sent, before stripping, so that
what the document says of a value is exactly what the server accepts.
"""

from __future__ import annotations

import re
import types
import uuid
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationInfo, field_validator
from typing_extensions import TypeAliasType


def _integer_only(annotation: Any) -> bool:
    """Whether the type takes integers (alone or in a list, an optional, ``Annotated``) and no floats."""
    found: set[type] = set()

    def walk(tp: Any) -> None:
        if tp is int or tp is float:
            found.add(tp)
            return
        origin = get_origin(tp)
        if origin is Annotated:
            walk(get_args(tp)[0])
        elif origin in (Union, types.UnionType, list, tuple, set, frozenset):
            for arg in get_args(tp):
                walk(arg)

    walk(annotation)
    return found == {int}


def _integral(value: Any) -> Any:
    """A float with no fraction as the int it is (in a list, each item); anything else unchanged."""
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is list:
        return [int(v) if type(v) is float and v.is_integer() else v for v in value]
    return value


class InputModel(BaseModel):
    """Base of request bodies kept as written (templates): strict JSON types, unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _integral_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name
        if name is not None and _integer_field(cls, name):
            return _integral(value)
        return value


@cache
def _integer_field(model: type[InputModel], name: str) -> bool:
    return _integer_only(model.model_fields[name].annotation)


class StrictModel(InputModel):
    """Base of request bodies: strict JSON types, unknown fields refused, strings stripped."""

    model_config = ConfigDict(str_strip_whitespace=True)


def _no_null(schema: dict[str, Any]) -> None:
    """JSON schema of a field that may be left out but is never null: its ``X | None`` without the null."""
    schema.pop("default", None)
    any_of = schema.pop("anyOf", None)
    if any_of is None:
        return
    kept = [s for s in any_of if s != {"type": "null"}]
    if len(kept) == 1:
        for key, value in kept[0].items():
            schema.setdefault(key, value)
    else:
        schema["anyOf"] = kept


def not_null(**field: Any) -> Any:
    """``Field`` of a ``PatchModel`` field that may be left out (unchanged) but not set to null."""
    return Field(default=None, json_schema_extra=_no_null, **field)


class PatchModel(StrictModel):
    """Partial update: only the fields given change. A field declared with ``not_null()`` may be left out
    but null is refused (a 422 naming the field): the document declares it optional, not nullable."""

    @field_validator("*")
    @classmethod
    def _refuse_null(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name
        if value is None and name is not None and cls.model_fields[name].json_schema_extra is _no_null:
            raise ValueError("may not be null")
        return value


def names_by_pattern(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of a ``dict[PatternKey, V]``: the keys' pattern as ``propertyNames`` and the
    values as ``additionalProperties``, exact (a key off the pattern is invalid, not merely unchecked) and
    still a map of the values' type to a generated client."""
    properties = schema.pop("patternProperties", None)
    if properties and len(properties) == 1:
        ((pattern, values),) = properties.items()
        schema["propertyNames"] = {"pattern": pattern}
        schema["additionalProperties"] = values


JsonUuid = Annotated[uuid.UUID, Strict(False)]

# What ``str_strip_whitespace`` trims: Unicode White_Space, as a regex class body usable by ECMA-262,
# Python ``re`` and Rust ``regex`` alike (escapes, no literal exotic characters).
_WHITE_SPACE = r"\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"
_NOT_A_LINE_BREAK = r"[^\r\n\u0000]"
# One line of text with at least one character that stripping keeps.
SINGLE_LINE_PATTERN = rf"^{_NOT_A_LINE_BREAK}*[^{_WHITE_SPACE}\u0000]{_NOT_A_LINE_BREAK}*$"
# One line of text, possibly empty or blank.
ANY_LINE_PATTERN = rf"^{_NOT_A_LINE_BREAK}*$"
# Text of any lines, without NUL: PostgreSQL cannot store U+0000 in text or jsonb.
NO_NUL_PATTERN = r"^[^\u0000]*$"
_LINE_BREAKS = "\r\n\x00"


def as_sent(max_length: int, pattern: str | None = None) -> BeforeValidator:
    """Refuse CR, LF, NUL, over-long text and text off ``pattern`` before stripping: the document describes
    the text as sent, so `" s1"` is no DNS label although it would be one stripped."""
    compiled = re.compile(pattern) if pattern else None

    def check(value: Any) -> Any:
        if isinstance(value, str):
            if any(ch in value for ch in _LINE_BREAKS):
                raise ValueError("must not contain CR, LF or NUL characters")
            if len(value) > max_length:
                raise ValueError(f"must be at most {max_length} characters")
            if compiled is not None and not compiled.match(value):
                raise ValueError(f"must match {pattern}")
        return value

    return BeforeValidator(check)


# ``json_schema_extra`` of a list whose items must not repeat (a validator of the model refuses repeats).
UNIQUE_ITEMS: dict[str, Any] = {"uniqueItems": True}


# --- value sets shared by several areas ---------------------------------------------------------------

TlsMode = TypeAliasType("TlsMode", Literal["ssl", "starttls", "none"])
