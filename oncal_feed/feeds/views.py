"""The feed endpoint: `GET`/`HEAD /feeds/<token>.ics`. Logic lives in `feeds.service`."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, request
from flask.blueprints import BlueprintSetupState

from oncal_feed.db import get_database
from oncal_feed.errors import ValidationError
from oncal_feed.errors_http import error_response
from oncal_feed.feeds.service import FeedNotFound, FeedQuery, FeedService
from oncal_feed.feeds.tokens import FEED_PATH

__all__ = ["feed_service", "feeds_blueprint"]

feeds_blueprint = Blueprint("feeds", __name__)

# One message for every dead link, so a 404 tells nothing about why (forged or revoked).
NOT_FOUND_MESSAGE = (
    "There is no calendar feed at this address. Feed links stop working when they are "
    "replaced; copy the current one from your settings page."
)


@feeds_blueprint.record_once
def _install_service(state: BlueprintSetupState) -> None:
    state.app.extensions["oncal_feeds"] = FeedService.from_config(state.app.config)


def feed_service(app: Flask | None = None) -> FeedService:
    """Return the app's feed service (the current app when none is given)."""
    return (app or current_app).extensions["oncal_feeds"]


@feeds_blueprint.route(
    FEED_PATH.format(token="<token>"),  # noqa: S106 (a URL rule, not a password)
    methods=["GET", "HEAD"],
)
def feed(token: str) -> Response:
    """Serve a user's calendar: conditional (ETag, Last-Modified), gzip when accepted."""
    answer = feed_service().answer(get_database(), _query(token))
    return Response(answer.body, status=answer.status, headers=answer.headers)


def _query(token: str) -> FeedQuery:
    tags = request.if_none_match
    listed = None
    if "If-None-Match" in request.headers:
        listed = frozenset({"*"} if tags.star_tag else tags.as_set(include_weak=True))
    return FeedQuery(
        token=token,
        args=request.args.to_dict(flat=False),
        if_none_match=listed,
        if_modified_since=request.if_modified_since,
        accepts_gzip=request.accept_encodings["gzip"] > 0,
        user_agent=request.user_agent.string,
    )


@feeds_blueprint.errorhandler(FeedNotFound)
def _not_found(_exc: FeedNotFound) -> Response:
    return error_response(404, "not_found", NOT_FOUND_MESSAGE)


@feeds_blueprint.errorhandler(ValidationError)
def _bad_query(exc: ValidationError) -> Response:
    return error_response(
        400,
        "bad_request",
        "The feed address has invalid query parameters.",
        [e.as_dict() for e in exc.errors],
    )
