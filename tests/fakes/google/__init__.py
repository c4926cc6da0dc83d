"""Fake Google OAuth 2.0 + Calendar API v3 server for tests (and manual runs).

It is a real HTTP server on 127.0.0.1 that the real client libraries talk to:
``google_auth_oauthlib.flow.Flow`` (consent + code exchange with PKCE),
``google.oauth2.credentials.Credentials`` (refresh), ``googleapiclient`` built with
``static_discovery=True`` and ``client_options={"api_endpoint": fake.api_endpoint}``,
and ``googleapiclient.http.BatchHttpRequest(batch_uri=fake.batch_uri)``.

Endpoints (``url`` is ``http://127.0.0.1:PORT``)::

    GET  /o/oauth2/auth           consent page (HTML form)
    POST /o/oauth2/approve        consent form target -> 302 to redirect_uri
    POST /token                   authorization_code and refresh_token grants
    POST /revoke                  token in form body or query
    GET  /oauth2/v3/userinfo      {sub, email, email_verified} for a bearer token
    GET  /oauth2/v1/certs         PEM keys that sign id_tokens (openid scope)
    *    /calendar/v3/...         Calendar API (api_endpoint = url + "/calendar/v3/")
    POST /batch/calendar/v3       multipart/mixed batch of Calendar API calls

Client-library facts this fake is built around (verified against the installed
versions):

* ``client_options.api_endpoint`` replaces ``rootUrl + servicePath`` *entirely*
  (``googleapiclient.discovery.build_from_document``), so it must include
  ``/calendar/v3/``; giving just the host sends requests to ``/calendars/...``,
  which this fake answers with a 404 that says so.
* ``service.new_batch_http_request()`` uses the discovery document's rootUrl and
  ignores ``api_endpoint``; build ``BatchHttpRequest(batch_uri=fake.batch_uri)``.
* ``BatchHttpRequest`` parses each response part's ``Content-ID`` as
  ``<anything + id>`` and splits the embedded response on the first ``"\n"``
  (status line) and the first ``"\r\n\r\n"`` (end of headers), so parts are
  written with CRLF and always carry at least one header.
* oauthlib refuses ``http://`` token URLs unless ``OAUTHLIB_INSECURE_TRANSPORT=1``
  is set, and raises ``Warning("Scope has changed ...")`` when fewer scopes are
  granted than requested unless ``OAUTHLIB_RELAX_TOKEN_SCOPE=1`` is set.
* httplib2 re-sends a request once when a kept-alive connection closes without a
  response (it assumes the connection was stale), so a "committed but lost" write
  is silently replayed; see ``Faults.drop_mode``.

Semantics worth knowing (modelled on Google's documented behaviour):

* A refresh token is issued only for ``access_type=offline``, and, like Google,
  only on the first consent of a user for a client unless ``prompt=consent``.
* Event ``start``/``end`` are read back normalised: ``dateTime`` rendered with an
  offset in the event's ``timeZone`` when one was given, else in the calendar's
  time zone (``Z`` for UTC); fractional seconds dropped.
* Deleting an event makes it ``status: cancelled`` (still returned by
  ``events.get``; listed only with ``showDeleted`` or ``updatedMin``/``syncToken``);
  its id stays taken (insert -> 409 ``duplicate``); ``update``/``patch`` with
  ``status: confirmed`` restores it.
* Scopes: ``calendar`` allows everything, ``calendar.events`` allows events on any
  of the user's calendars but not calendar management, ``calendar.app.created``
  allows creating calendars and touching only calendars created by the same OAuth
  client (403 ``insufficientPermissions`` otherwise, including ``primary``);
  it may not call ``calendarList.list`` at all (Google's reference lists only
  ``calendar``, ``calendar.readonly`` and the ``calendar.calendarlist`` scopes for it),
  so an app with it cannot find a calendar it made without knowing its id.
* Not modelled: recurrence expansion (``singleEvents`` is accepted, recurring
  events come back as their master), sharing/ACLs, attendees' copies, watch
  channels, ``events.import``/``move``/``quickAdd``/``instances``.

Layout (one module per part, mixed into one class)::

    model.py     constants, error shape and state: apps, users, grants, calendars, events
    identity.py  IdentityMixin: consent page, token, revoke, userinfo, certs
    calendar.py  CalendarMixin: calendars, calendarList, events
    batch.py     BatchMixin: multipart/mixed batch
    fake.py      FakeGoogle: server, test controls, inspection, dispatch
    cli.py       main() for ``python -m tests.fakes.google``
"""

from tests.fakes.google.cli import main
from tests.fakes.google.fake import FakeGoogle
from tests.fakes.google.model import (
    API_PREFIX,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REDIRECT_URI,
    SCOPE_APP_CREATED,
    SCOPE_CALENDAR,
    SCOPE_CALENDAR_READONLY,
    SCOPE_CALENDARLIST,
    SCOPE_CALENDARLIST_READONLY,
    SCOPE_CALENDARS,
    SCOPE_CALENDARS_READONLY,
    SCOPE_EVENTS,
    SCOPE_EVENTS_OWNED,
    SCOPE_EVENTS_OWNED_READONLY,
    SCOPE_EVENTS_READONLY,
    ApiCall,
    ApiError,
    OAuthClient,
)

__all__ = [
    "API_PREFIX",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_REDIRECT_URI",
    "SCOPE_APP_CREATED",
    "SCOPE_CALENDAR",
    "SCOPE_CALENDARLIST",
    "SCOPE_CALENDARLIST_READONLY",
    "SCOPE_CALENDARS",
    "SCOPE_CALENDARS_READONLY",
    "SCOPE_CALENDAR_READONLY",
    "SCOPE_EVENTS",
    "SCOPE_EVENTS_OWNED",
    "SCOPE_EVENTS_OWNED_READONLY",
    "SCOPE_EVENTS_READONLY",
    "ApiCall",
    "ApiError",
    "FakeGoogle",
    "OAuthClient",
    "main",
]
