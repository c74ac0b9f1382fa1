"""``simple_param``: the fast Content-Type parameter reader gives exactly what ``get_param`` gives."""

from __future__ import annotations

from email.message import Message

import pytest

from nimbus_api.classify.mimeparse import _boundary, simple_param

VALUES = [
    "text/plain; charset=utf-8",
    'text/plain;charset="UTF-8";format=flowed',
    "text/plain; CHARSET=ISO-8859-1",
    'text/plain; charset = "x" ',
    "text/plain; charset=utf-8 format=flowed",
    "charset=utf-8",
    "text/plain; charset=",
    'text/plain; charset="";',
    "text/plain; charset=a b; charset=c",
    "text/plain; xcharset=1; charset=2",
    "text/plain; name*=utf-8''x; charset=a",
    "text/plain; charset=us-ascii (Plain text)",
    'text/plain; charset="a\\"b"',
    'multipart/mixed; boundary="a b=c"',
    'multipart/mixed;\n\tboundary="----=_NextPart_000_0001"',
    "multipart/report; report-type=delivery-status; boundary=Q1w2E3",
    "multipart/mixed; boundary*=us-ascii'en'abc",
    'multipart/alternative; boundary="b "',
    "text/html",
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("name", ["charset", "boundary", "report-type"])
def test_simple_param_matches_get_param(value: str, name: str) -> None:
    part = Message()
    part["Content-Type"] = value
    expected = part.get_param(name)
    assert simple_param(part, name) == (expected if isinstance(expected, str) else None)


@pytest.mark.parametrize("value", VALUES)
def test_boundary_matches_get_boundary(value: str) -> None:
    part = Message()
    part["Content-Type"] = value
    assert _boundary(part) == part.get_boundary()


def test_no_content_type_has_no_parameter() -> None:
    assert simple_param(Message(), "charset") is None
