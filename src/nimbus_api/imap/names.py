"""Folder names: modified UTF-7 (RFC 3501 5.1.3) and special-use folders (RFC 6154) with their usual names.

Names travel in modified UTF-7 and are decoded to ``str`` here (``Entw&APw-rfe`` is ``Entwürfe``);
callers always use decoded names. Special-use folders come from the server's flags (``LIST ... RETURN
(SPECIAL-USE)`` when offered) and, failing that, from well-known names in several languages.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from nimbus_api.imap.types import Folder


def decode_folder_name(raw: str) -> str:
    """``Entw&APw-rfe`` -> ``Entwürfe``. Malformed input is returned unchanged (some servers send UTF-8)."""
    if "&" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = raw.find("-", i + 1)
        if end == -1:
            return raw
        chunk = raw[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            try:
                out.append(base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True).decode("utf-16-be"))
            except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                return raw
        i = end + 1
    return "".join(out)


def encode_folder_name(name: str) -> str:
    """``Entwürfe`` -> ``Entw&APw-rfe``: printable ASCII stays, ``&`` becomes ``&-``, the rest is base64."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# Special-use folders (RFC 6154) and the names providers give them without flags

SPECIAL_USE_NAMES: dict[str, tuple[str, ...]] = {
    "\\junk": (
        "junk", "spam", "junk e-mail", "junk email", "junk mail", "junk-e-mail", "bulk mail", "bulk",
        "spam-ordner", "spamverdacht", "unerwünscht", "courrier indésirable", "pourriel",
        "correo no deseado", "posta indesiderata", "ongewenste e-mail", "skräppost", "roskaposti",
        "nevyžádaná pošta", "wiadomości-śmieci", "lixo eletrônico", "spam folder",
    ),
    "\\sent": (
        "sent", "sent items", "sent messages", "sent mail", "gesendet", "gesendete elemente",
        "gesendete objekte", "envoyés", "éléments envoyés", "messages envoyés", "enviados",
        "elementos enviados", "posta inviata", "inviata", "verzonden items", "verzonden", "skickat",
        "skickade objekt",
    ),
    "\\drafts": ("drafts", "draft", "entwürfe", "brouillons", "borradores", "bozze", "concepten", "utkast"),
    "\\trash": (
        "trash", "deleted items", "deleted messages", "bin", "papierkorb", "gelöschte elemente",
        "gelöschte objekte", "corbeille", "éléments supprimés", "papelera", "elementos eliminados",
        "cestino", "posta eliminata", "prullenbak", "verwijderde items", "papperskorgen",
    ),
    "\\archive": ("archive", "archiv", "archives", "archivo", "archivio", "archief", "arkiv"),
    "\\all": ("all mail", "alle nachrichten", "tous les messages", "todos"),
}  # fmt: skip


def special_use(folders: Iterable[Folder], flag: str) -> Folder | None:
    """The folder serving ``flag`` (``\\Junk``, ``\\Sent``, ...): by the server's flag, else by name.

    Names are compared case-insensitively, whole (``[Gmail]/Spam``, ``INBOX.Junk``) and by their last
    component, in the order of ``SPECIAL_USE_NAMES`` (so ``Junk`` wins over ``Bulk``).
    """
    candidates = [f for f in folders if f.selectable]
    for folder in candidates:
        if folder.has_flag(flag):
            return folder
    names = SPECIAL_USE_NAMES.get(flag.lower(), ())
    for wanted in names:
        for folder in candidates:
            if folder.name.casefold() == wanted:
                return folder
    for wanted in names:
        for folder in candidates:
            leaf = folder.name.rsplit(folder.delimiter, 1)[-1] if folder.delimiter else folder.name
            if leaf.casefold() == wanted:
                return folder
    return None
