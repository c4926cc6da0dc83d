"""Schedule sources: shifts brought in from the on-call tools teams already run.

A source is another tool's iCalendar feed (any ICS/webcal URL: PagerDuty, Opsgenie,
Grafana OnCall, GoAlert, Google or Outlook calendars) or PagerDuty's REST API, polled on
the push-sync queue and turned into "all the shifts of this schedule in this window" for
`shifts.import_window`, so identity, SEQUENCE and push-sync nudges work as for the API.

Owns: `fetch` (HTTP with the SSRF guard and limits), `ics` and `pagerduty` (readers
into `Occurrence`s; `ics` is pure), `mapping` (occurrences to people; pure), `service`
(the store and one poll), `tasks` (queue wiring), `cli` (`oncal-feed source ...`).
The JSON API routes live in `oncal_feed.api.sources`, the settings card in `web`.

May import: `oncal_feed.errors`, `models`, `db`, `shifts`, `validation`, `notify`,
`connections.vault` (secrets at rest), `providers.base` (Retry-After), `sync.engine`
(back-off) and `sync.tasks` (the queue). Nothing in `api`, `web` or `cli` imports back
into it except through `service`, `tasks` and `cli`.
"""
