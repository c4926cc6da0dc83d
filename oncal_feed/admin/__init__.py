"""The admin area: what admins see and do for everyone (users, feeds, calendar
connections, API keys, schedules, sync health).

`overview` holds the queries (no Flask), `views` the `/admin` pages, `links` the
invitation and reset links (also used by `oncal_feed.cli.people`). The same actions for
automation are in `oncal_feed.api.admin`. May import the stores (accounts, connections,
feeds, ops); nothing imports it but `create_app`, the API and the CLI.
"""
