"""Calendar connections: the OAuth flows with Google and Microsoft, and the token vault.

Owns: connecting (`flow`: connect, callback), the adapter for a stored grant
(`credentials`), disconnecting (`disconnect`), lookups and summaries (`service`), each
provider's OAuth module of one shape (`oauth`, `google`, `microsoft`), the signed OAuth
state (`state`), the encrypted tokens (`vault`), and the blueprint (`views`).

May import: the core (db, models, errors), `providers`; the views also `sync` (a sync
right after connecting) and `web.oauth`. Never imported by `providers`.
"""
