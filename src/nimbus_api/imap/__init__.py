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

The design (pinned address with host-name verification, STARTTLS handling, timeouts, polling) is
described in ``client``.
"""

from nimbus_api.imap.client import (
    MODES,
    Folder,
    FolderStatus,
    FoundMessage,
    ImapServer,
    ImapSession,
    Mode,
    decode_folder_name,
    encode_folder_name,
    find_message,
    imap_session,
    special_use,
)
from nimbus_api.imap.errors import CODES, ImapError

__all__ = [
    "CODES",
    "MODES",
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
    "special_use",
]
