"""Fake Microsoft identity platform (v2.0) + Microsoft Graph v1.0 calendar server.

A real HTTP server on 127.0.0.1 (built on ``tests.fakes.server``) that the REAL
``msal`` library and plain ``requests`` calls to Graph talk to, for tests and manual
runs (``python -m tests.fakes.microsoft --port 8766``).

Pointing msal at the fake
-------------------------
msal (checked against 1.39) only accepts an ``https://<host>/<tenant>`` authority:
``msal.authority.canonicalize`` raises ``ValueError`` for any other scheme, even with
``instance_discovery=False, validate_authority=False``, and it parses the *discovered*
``token_endpoint`` (and every cached token's endpoint) the same way.  So an
``http://127.0.0.1:PORT/<tenant>`` authority is impossible.  Instead the app keeps a
normal https authority and tests inject an HTTP client that routes that host to the
fake::

    with FakeMicrosoft() as fake:
        fake.register_client("test-client", "test-secret", [redirect_uri])
        app = msal.ConfidentialClientApplication(
            "test-client", client_credential="test-secret", **fake.msal_kwargs("common")
        )

``fake.msal_kwargs(tenant)`` is exactly::

    {"authority": f"{fake.authority_host}/{tenant}",   # https://login.microsoftonline.com/common
     "instance_discovery": False,
     "validate_authority": False,
     "http_client": fake.loopback_http_client()}

``loopback_http_client()`` is a ``requests.Session`` subclass (``LoopbackSession``)
that rewrites ``https://login.microsoftonline.com`` (``authority_host``, configurable in
the constructor) and ``https://graph.microsoft.com`` to ``fake.url``.  App settings:
``MICROSOFT_AUTHORITY_HOST = fake.authority_host`` (unchanged default),
``GRAPH_ENDPOINT = fake.graph_endpoint`` (``{url}/v1.0``), plus the injected
``http_client``.  Leaving ``instance_discovery`` at its default also works (the fake
answers ``/common/discovery/instance``).

The discovery document advertises the *loopback* ``authorization_endpoint`` (msal
never parses that one), so the ``auth_uri`` msal builds can be opened by a real
browser; the ``token_endpoint`` stays on the https authority host.

msal facts this fake is built around
------------------------------------
* Client secret goes in the form body (``client_secret_post``); Basic auth is also
  accepted.  msal always sends ``client_info=1`` (authorize and token requests) and
  only creates a cache *account* (``get_accounts()``) when the token response has
  ``client_info`` (base64url JSON ``{"uid": oid, "utid": tid}``); the fake returns it.
* msal sends ``nonce=sha256(flow nonce)`` in the authorize request and raises unless
  the id_token's ``nonce`` claim equals that value; it decodes but never verifies the
  id_token (signed here with HS256 and the client secret).  Claims: ``aud`` (client
  id), ``iss`` (``{authority_host}/{tid}/v2.0``), ``iat``/``nbf``/``exp``, ``nonce``,
  ``oid``, ``sub``, ``tid``, ``preferred_username``, ``name``, ``email``, ``ver``.
* msal adds ``openid profile offline_access`` to every request; a refresh token is only
  issued when ``offline_access`` was granted, an id_token only with ``openid``.
* ``acquire_token_silent`` treats a cached access token as expired when fewer than 300
  seconds remain (computed from ``expires_in`` at issue time), so a lifetime under
  300 s (``fake.access_token_lifetime``) makes every silent call refresh.
  ``expire_access_tokens()`` only affects the fake (Graph then answers 401); msal
  refreshes only when *it* thinks the token expired, or with ``force_refresh=True``.
* msal's ``ThrottledHttpClient`` caches HTTP 400 token responses for 60 s and 429/5xx
  for ``Retry-After``, so an identical failing refresh is not re-sent within that time.
* ``initiate_auth_code_flow`` warns (``UserWarning``) unless ``response_mode="form_post"``;
  the fake supports ``query`` (default), ``fragment`` and ``form_post``.

Identity endpoints (``{tenant}``: ``common``, ``organizations``, ``consumers`` or the
fake's ``tenant_id``)::

    GET  /{tenant}/v2.0/.well-known/openid-configuration
    GET  /{tenant}/oauth2/v2.0/authorize      consent page (HTML form)
    POST /{tenant}/oauth2/v2.0/consent        consent form target (Accept / Cancel)
    POST /{tenant}/oauth2/v2.0/token          authorization_code, refresh_token grants
    GET  /{tenant}/discovery/v2.0/keys        empty JWKS
    GET  /common/discovery/instance           instance discovery metadata

Graph (``Authorization: Bearer`` required; ``/users/{oid-or-upn}/...`` works like
``/me/...`` for the token's own user)::

    GET    /v1.0/me
    GET    /v1.0/me/calendars                 $top $skip $select $filter=name eq '..'
    POST   /v1.0/me/calendars                 {"name"}; duplicate name -> 409 ErrorFolderExists
    GET|PATCH|DELETE /v1.0/me/calendars/{id}
    GET    /v1.0/me/calendar                  default calendar ("Calendar")
    GET|POST /v1.0/me/calendars/{id}/events   (also /me/calendar/events)
    GET|POST /v1.0/me/events                  list: default calendar only (like Graph)
    GET|PATCH|DELETE /v1.0/me/events/{id}     (also /me/calendars/{id}/events/{id})
    GET    /v1.0/me/calendarView, /me/calendars/{id}/calendarView
                                              ?startDateTime=..&endDateTime=.. (required)
    POST   /v1.0/$batch                       JSON batching, max 20 members, dependsOn

Event list options: ``$top`` (default 10, max 1000), ``$skip``, ``@odata.nextLink``
(absolute URL at the fake, ``$skip`` based), ``$select``, ``$orderby``
(``start/dateTime``, ``end/dateTime``, ``createdDateTime``, ``lastModifiedDateTime``,
``subject``; ``asc``/``desc``), ``$count=true``, ``$expand`` and ``$filter``.
``$filter`` is one or more clauses joined with ``and``:

* ``singleValueExtendedProperties/Any(ep: ep/id eq '{id}' and ep/value eq '{v}')``,
  ``... and ep/value ne '{v}')``, ``... and ep/value ne null)``,
  ``... and contains(ep/value, '{v}'))``, ``... and startswith(ep/value, '{v}'))``
  (the documented forms; value comparison is case-insensitive, the property Name
  case-sensitive; an ``Any`` with only the id clause is rejected with 400
  ``ErrorInvalidUrlQueryFilter``, since Graph documents no such form);
* ``start/dateTime`` / ``end/dateTime`` with ``eq ne gt ge lt le`` and a quoted
  ISO date-time (UTC unless it has an offset);
* ``subject``, ``transactionId``, ``iCalUId``, ``showAs`` with ``eq``/``ne``.

``$expand=singleValueExtendedProperties($filter=id eq '{id}')`` (several ids joined
with ``or``) adds the matching properties; without it events carry no extended
properties, like Graph.  The key is left out when nothing matches.

Event semantics (modelled on Graph):

* ``start``/``end`` are read back as ``{"dateTime": "2026-03-08T09:00:00.0000000",
  "timeZone": "UTC"}`` whatever zone was sent (IANA names, ``UTC`` and a few Windows
  names accepted; others -> 400 ``TimeZoneNotSupportedException``), or in the zone of a
  ``Prefer: outlook.timezone="..."`` header; the sent zones are kept in
  ``originalStartTimeZone``/``originalEndTimeZone``.  End before start -> 400.
* A ``text`` body is stored and returned as ``contentType: html`` wrapped in an HTML
  document (``Prefer: outlook.body-content-type="text"`` returns text); ``bodyPreview``
  is the plain text.
* ``transactionId``: a POST whose ``transactionId`` matches an event that still exists
  in the same mailbox returns that event (201) instead of creating a duplicate; it
  cannot be changed by PATCH.  ``transactionId`` is returned only when set.
* Every event has a long opaque ``id``, ``changeKey`` and ``@odata.etag``
  (``W/"<changeKey>"``, new on every change), ``iCalUId``, ``webLink``,
  ``createdDateTime``, ``lastModifiedDateTime`` and Graph's defaults (``showAs: busy``,
  ``isReminderOn: true`` ...).  ``If-Match`` on PATCH/DELETE -> 412
  ``ErrorIrresolvableConflict`` on mismatch.  Unknown body properties -> 400
  ``RequestBodyRead``; ids that are not Graph-shaped -> 400 ``ErrorInvalidIdMalformed``;
  unknown ids -> 404 ``ErrorItemNotFound``.

Faults (``fake.faults``, see ``faults.Faults``; seeded, thread-safe).  Targets:
``"graph"`` (direct Graph calls) and ``"batch"`` (each ``$batch`` member) by default;
add ``"batch_envelope"`` (the ``$batch`` request as a whole), ``"token"``,
``"authorize"`` or ``"discovery"`` to ``faults.targets`` to fault those too.  In a
batch, an error fault becomes that member's status (429 carries ``Retry-After`` in
the member's headers, the envelope stays 200); a drop fault drops the whole
connection, members before it stay committed (``drop_after_commit``: that member
too).  Error statuses default to 500/503/504.

Counters (``fake.stats``, ``reset_stats()``): ``http`` (every request); ``graph``
(direct Graph requests); ``graph_round_trips`` (direct + ``$batch`` envelopes: a batch
is one round trip); ``batch``; ``batch_members``; ``graph_ops`` (operations that
reached a handler, direct or batch member, i.e. not answered by an injected fault)
and one counter per operation (``me.get``, ``calendars.list|get|create|update|delete``,
``events.list|get|create|update|delete``, ``calendarView.list``; ``unknown`` when the
token was refused first); ``discovery``, ``authorize``, ``consent``, ``token``,
``token:<grant_type>``.  Every Graph operation is also logged in ``fake.calls``
(``GraphCall(op, method, path, status, in_batch, email)``).

Test API (``FakeMicrosoft``): ``register_client``, ``add_user``, ``revoke_grants``,
``expire_access_tokens``, ``access_token_lifetime`` (seconds), ``access_token()`` (a
Graph token without the OAuth dance), ``consent`` / ``consent_params`` /
``consent_exchange`` (drive the consent page over HTTP), ``calendars``, ``events``,
``put_event`` / ``edit_event`` / ``remove_event`` (changes "made in Outlook"),
``faults``, ``fail_next``, ``stats``, ``calls``, ``clock`` (injectable time source),
``expanded_under_select`` (default True, as Graph documents: ``$expand``'ed extended
properties come back whatever ``$select`` says; False drops them unless selected, a
stricter server that once made a full check duplicate every event).

Not modelled: recurrence expansion, attendees and meeting responses, other users'
mailboxes, delta queries, subscriptions, ``multiValueExtendedProperties`` filters,
ETag-based conditional GET, certificates/client assertions, device code flow.

Layout (one module per part, mixed into one class like Radicale's storage parts)::

    model.py     constants and state: apps, users' mailboxes, codes, tokens
    values.py    date-times and zones, text and HTML bodies as Graph shapes them
    identity.py  IdentityMixin: discovery, consent page, token endpoint
    graph.py     GraphMixin: me, calendars, events, calendarView
    odata.py     ODataMixin: $select, $top/$skip, $expand, $filter, $orderby
    batch.py     BatchMixin: $batch
    loopback.py  LoopbackSession (msal's http_client) and a form reader
    fake.py      FakeMicrosoft: server, test controls, inspection, dispatch
    cli.py       main() for ``python -m tests.fakes.microsoft``
"""

from tests.fakes.microsoft.cli import main
from tests.fakes.microsoft.fake import FakeMicrosoft
from tests.fakes.microsoft.loopback import LoopbackSession
from tests.fakes.microsoft.model import (
    DEFAULT_AUTHORITY_HOST,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REDIRECT_URI,
    DEFAULT_TENANT_ID,
    GRAPH_HOST,
    GraphCall,
)

__all__ = [
    "DEFAULT_AUTHORITY_HOST",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_REDIRECT_URI",
    "DEFAULT_TENANT_ID",
    "GRAPH_HOST",
    "FakeMicrosoft",
    "GraphCall",
    "LoopbackSession",
    "main",
]
