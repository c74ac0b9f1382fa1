"""DNS blocklists (DNSBL/DBL) as an adapter: which lists, how their answers read, how they are asked.

Knows nothing of the ORM or the settings: ``BlocklistChecker`` takes a dnspython resolver and the
lists (``lists.parse_entries`` of ``NIMBUS_BLOCKLISTS``) and returns a ``BlocklistReport``.
"""

from nimbus_api.blocklists.cache import TtlCache
from nimbus_api.blocklists.lists import DEFAULT_ENTRIES, Blocklist, Code, default_lists, parse_entries
from nimbus_api.blocklists.query import Answer, BlocklistChecker, BlocklistReport, ListResult, query_name

__all__ = [
    "DEFAULT_ENTRIES",
    "Answer",
    "Blocklist",
    "BlocklistChecker",
    "BlocklistReport",
    "Code",
    "ListResult",
    "TtlCache",
    "default_lists",
    "parse_entries",
    "query_name",
]
