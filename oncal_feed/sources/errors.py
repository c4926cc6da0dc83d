"""What can go wrong with a source, in plain words fit for its status (never a secret)."""

from __future__ import annotations

from oncal_feed.errors import OncalError

__all__ = ["AddressRefused", "FeedRejected", "FetchFailed", "SourceProblem"]


class SourceProblem(OncalError):
    """A poll found a problem; `problem` is shown on the source's status as it is.

    `retry_after` (seconds) is the server's Retry-After, when it sent one.
    """

    def __init__(self, problem: str, *, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


class FetchFailed(SourceProblem):
    """The source could not be fetched: network, HTTP status, size or time limits."""


class AddressRefused(FetchFailed):
    """The source's address (or a redirect's) is loopback, private, link-local or multicast."""


class FeedRejected(SourceProblem):
    """The answer is not a usable calendar (HTML, truncated, unparsable, suddenly shrunk)."""
