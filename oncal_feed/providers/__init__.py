"""Remote calendars behind one small interface: Google, Microsoft Graph, and in-memory."""

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
