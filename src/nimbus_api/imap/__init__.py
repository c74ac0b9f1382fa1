"""IMAP adapter: prove a mailbox works, find the test message, and poll folders later.

Knows nothing of the ORM or settings: callers pass an ``ImapServer`` (where and how to log in, the
password as a ``Secret``) and the process's ``NetContext`` (egress policy, resolver, shared TLS context,
timeouts). Every failure is an ``ImapError`` with a stable ``code`` (see ``errors``).

Typical use::

    async with imap_session(server, net) as imap:
        folders = await imap.list_folders()
        status = await imap.select(server.folder)        # exists, uidnext, uidvalidity
        junk = imap.special_use(folders, "\\\\Junk")

    found = await find_message(server, net, header="X-Nimbus-Test", token=token, timeout=60, delete=True)

Modules by role: ``types`` (values), ``connection`` (egress policy, pinned address, TLS, the
aioimaplib protocol on our socket), ``session`` (LOGIN and the commands), ``responses`` (parsing
replies), ``names`` (modified UTF-7, special-use folders), ``errors`` (codes).
"""

from nimbus_api.imap.errors import CODES, ImapError
from nimbus_api.imap.finding import find_message
from nimbus_api.imap.names import decode_folder_name, encode_folder_name, special_use
from nimbus_api.imap.session import ImapSession, imap_session, open_session
from nimbus_api.imap.types import MODES, Folder, FolderStatus, FoundMessage, ImapServer, Mode
from nimbus_api.kit.sasl import AuthKind

__all__ = [
    "CODES",
    "MODES",
    "AuthKind",
    "Folder",
    "FolderStatus",
    "FoundMessage",
    "ImapError",
    "ImapServer",
    "ImapSession",
    "Mode",
    "decode_folder_name",
    "encode_folder_name",
    "find_message",
    "imap_session",
    "open_session",
    "special_use",
]
