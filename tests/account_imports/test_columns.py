"""The import file parser: column aliases of the usual exports, per-row errors, what refuses a whole file,
CSV injection, BOMs, encodings and delimiters. No network, no database."""

from __future__ import annotations

import json

import pytest

from nimbus_api.account_imports import columns
from nimbus_api.account_imports.export import guard
from nimbus_api.kit.problems import MalformedRequest, ValidationProblem
from nimbus_api.kit.special_use import set_process_default

MAX = 1000


@pytest.fixture(autouse=True)
def _special_use() -> None:
    set_process_default(True)


def _one(csv_text: str | bytes) -> columns.ParsedRow:
    data = csv_text.encode() if isinstance(csv_text, str) else csv_text
    parsed = columns.parse_csv(data, max_rows=MAX)
    assert len(parsed.rows) == 1, parsed
    return parsed.rows[0]


def _file_error(data: bytes) -> str:
    with pytest.raises(ValidationProblem) as info:
        columns.parse_csv(data, max_rows=MAX)
    [error] = info.value.extra["errors"]
    assert error["field"] == "file"
    return str(error["message"])


def test_instantly_style_export() -> None:
    row = _one(
        "Email,First Name,Last Name,SMTP Username,SMTP Password,SMTP Host,SMTP Port,IMAP Username,IMAP Password,"
        "IMAP Host,IMAP Port,Daily Limit,Warmup Enabled\n"
        "ada@example.org,Ada,Lovelace,ada@example.org,pw1,smtp.example.org,587,ada@example.org,pw2,"
        "imap.example.org,993,40,TRUE\n"
    )
    assert row.error is None and row.payload is not None
    p = row.payload
    assert (p.email, p.from_name, p.daily_send_limit, p.warmup_enabled) == ("ada@example.org", "Ada Lovelace", 40, True)
    assert (p.smtp.host, p.smtp.port, p.smtp.mode, p.smtp.username) == (
        "smtp.example.org",
        587,
        "starttls",
        "ada@example.org",
    )
    assert p.smtp.password is not None and p.smtp.password.get_secret_value() == "pw1"
    assert p.imap is not None and (p.imap.port, p.imap.mode, p.imap.password.get_secret_value()) == (993, "ssl", "pw2")


def test_smartlead_style_export_with_defaults() -> None:
    row = _one(
        "from_name,from_email,smtp_user,smtp_password,smtp_host,smtp_port,imap_host,max_email_per_day,warmup\n"
        "Bob B,bob@example.org,bob,pw,smtp.example.org,465,imap.example.org,25,no\n"
    )
    assert row.payload is not None, row.error
    p = row.payload
    assert p.smtp.mode == "ssl" and p.smtp.username == "bob"
    assert p.imap is not None and (p.imap.port, p.imap.mode, p.imap.username) == (993, "ssl", "bob")
    assert p.imap.password.get_secret_value() == "pw", "the IMAP password defaults to the SMTP one"
    assert (p.daily_send_limit, p.warmup_enabled) == (25, False)


def test_lemlist_style_semicolons_and_a_bom() -> None:
    data = (
        "\ufeffemail;sender_name;smtp_server;smtp_port;smtp_login;smtp_pass\n"
        "c@example.org;Cé;smtp.example.org;587;c;pw\n"
    )
    row = _one(data.encode("utf-8"))
    assert row.payload is not None, row.error
    assert (row.payload.from_name, row.payload.smtp.username, row.payload.imap) == ("Cé", "c", None)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_its_bom(encoding: str) -> None:
    text = "email\tsmtp_host\tsmtp_port\tfrom_name\nd@example.org\tsmtp.example.org\t587\tDörte\n"
    data = text.encode(encoding)
    if encoding != "utf-16":
        data = ("\ufeff" + text).encode(encoding)
    row = _one(data)
    assert row.payload is not None and row.payload.from_name == "Dörte"


def test_bad_rows_are_reported_one_by_one() -> None:
    parsed = columns.parse_csv(
        (
            b"email,smtp_host,smtp_port,smtp_password,daily_limit,warmup\n"
            b"not-an-address,smtp.example.org,587,pw,,\n"
            b"e@example.org,,587,pw,,\n"
            b"f@example.org,smtp.example.org,port,pw,,\n"
            b"g@example.org,smtp.example.org,465,pw,,maybe\n"
            b"h@example.org,smtp.example.org,587,pw,lots,\n"
            b"i@example.org,smtp.example.org,99999,pw,,\n"
            b"j@example.org,smtp.example.org,587,pw,,,extra\n"
            b"k@example.org,smtp.example.org,587,pw,10,on\n"
        ),
        max_rows=MAX,
    )
    got = {r.number: (r.error.field if r.error else None) for r in parsed.rows}
    assert got == {
        2: "email",
        3: "smtp_host",
        4: "smtp_port",
        5: "warmup_enabled",
        6: "daily_limit",
        7: "smtp_port",
        8: None,
        9: None,
    }
    assert parsed.rows[6].error is not None and "more cells" in parsed.rows[6].error.message
    assert parsed.rows[7].payload is not None and parsed.rows[7].payload.warmup_enabled is True
    assert all("pw" not in (r.error.message if r.error else "") for r in parsed.rows)


def test_header_injection_is_a_row_error() -> None:
    row = _one('email,from_name,smtp_host,smtp_port\nl@example.org,"Eve\r\nBcc: x@evil.example",smtp.example.org,587\n')
    assert row.error is not None and row.error.field == "from_name"


def test_formula_cells_are_data_and_the_export_guard_is_undone() -> None:
    row = _one("email,from_name,smtp_host,smtp_port,label\nm@example.org,=1+2,smtp.example.org,587,'@SUM(A1)\n")
    assert row.payload is not None
    assert row.payload.from_name == "=1+2" and row.payload.label == "@SUM(A1)"
    for value in ("=cmd|' /C calc'!A0", "+1", "-2", "@x", "plain"):
        assert columns.unformula(guard(value)) == value
    assert guard("=x") == "'=x" and guard("plain") == "plain"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "no header"),
        (b"name,smtp_host\nx,y\n", "no email column"),
        (b"email,e-mail\na@example.org,b@example.org\n", "columns repeat"),
        (b"email\n\xc3\x28@example.org\n", "not UTF-8"),
        (b"email\na\x00b@example.org\n", "NUL"),
        (b'email,from_name\na@example.org,"unclosed\n', "not valid CSV"),
    ],
)
def test_unreadable_files_are_refused_whole(data: bytes, says: str) -> None:
    assert says in _file_error(data)


def test_over_the_row_limit_is_refused_whole_and_blank_lines_do_not_count() -> None:
    body = "email,smtp_host,smtp_port\n" + "a@example.org,h.example.org,587\n\n" * 3
    assert len(columns.parse_csv(body.encode(), max_rows=3).rows) == 3
    with pytest.raises(ValidationProblem):
        columns.parse_csv((body + "b@example.org,h.example.org,587\n").encode(), max_rows=3)


def test_json_shapes() -> None:
    parsed = columns.parse_json(
        {"accounts": [{"Email": "n@example.org", "SMTP Host": "smtp.example.org", "smtp_port": 587, "x": 1}, 7]},
        max_rows=MAX,
    )
    assert parsed.rows[0].payload is not None and parsed.ignored_columns == ["x"]
    assert parsed.rows[1].error is not None and parsed.rows[1].error.message == "not a JSON object"
    bad = columns.parse_json(
        {"accounts": [{"email": "o@example.org", "smtp_host": ["a"], "smtp_port": 587}]}, max_rows=MAX
    )
    assert bad.rows[0].error is not None and bad.rows[0].error.field == "smtp_host"
    surrogate = columns.parse_json(json.loads('{"accounts": [{"email": "p\\ud800@example.org"}]}'), max_rows=MAX)
    assert surrogate.rows[0].error is not None
    for document in ({"rows": []}, {"accounts": {}}, {"accounts": [{}] * (MAX + 1)}):
        with pytest.raises(ValidationProblem):
            columns.parse_json(document, max_rows=MAX)


@pytest.mark.parametrize("raw", [b"", b"null", b"[]", b"12", b'{"accounts": ', b'{"a": "\xc3\x28"}', b"[" * 100_000])
def test_unparsable_json_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedRequest):
        columns.load_json(raw)


def test_every_alias_names_a_known_column() -> None:
    assert set(columns.EXPORT_COLUMNS) <= set(columns.ALIASES)
    for name, aliases in columns.ALIASES.items():
        for alias in aliases:
            assert columns.column_name(alias.replace("_", " ").title()) == name
