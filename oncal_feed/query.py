"""Query-string rules shared by every JSON API blueprint.

Each API blueprint registers `refuse_repeated_parameters` as a `before_request` hook
(`/api/v1`, `/api/calendar`; a new API blueprint does the same), so no view can take
the first of two values of a parameter by accident.
"""

from __future__ import annotations

from flask import request

from oncal_feed.validation import refuse_repeated

__all__ = ["refuse_repeated_parameters"]


def refuse_repeated_parameters() -> None:
    """Answer 422 naming every query parameter given more than once.

    No API parameter is repeatable today; one that becomes so reads
    `request.args.getlist` and is named in its blueprint's own check.
    """
    refuse_repeated(request.args.to_dict(flat=False))
