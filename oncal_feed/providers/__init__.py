"""Remote calendars behind one small interface: Google, Microsoft Graph, and in-memory.

Owns: the `CalendarProvider` interface and its error tree (`base`), one adapter per API
(`google`, `graph`, `memory`), and the registry of connectable providers (`registry`).
What an adapter can do is an attribute of it (`client_chosen_ids`, `max_batch`).

May import: `errors` and `rendering` only (never `connections`, `sync` or Flask).
"""

from oncal_feed.providers.base import (
    AuthorizationLost,
    CalendarProvider,
    Operation,
    OperationResult,
    PermanentError,
    ProviderError,
    RateLimited,
    RemoteConflict,
    RemoteEvent,
    RemoteNotFound,
    TransientError,
)

__all__ = [
    "AuthorizationLost",
    "CalendarProvider",
    "Operation",
    "OperationResult",
    "PermanentError",
    "ProviderError",
    "RateLimited",
    "RemoteConflict",
    "RemoteEvent",
    "RemoteNotFound",
    "TransientError",
]
