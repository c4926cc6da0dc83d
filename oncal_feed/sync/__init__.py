"""Push sync: plan (pure diff) → engine (run loop) → apply (batches) → tasks (queue).

Owns: the pure planner (`plan`), the lease (`lease`), the status store of records
(`status`), when to sync (`schedule`: window, back-off, full check), applying a plan
(`apply`, with `BatchSizer`), one connection's sync (`engine.sync_connection`), running
syncs with the app's providers (`service`), the queue and sweep (`tasks`) and the
`worker` command (`cli`).

May import: the core (db, models, shifts, notify, metrics), `rendering`, `providers`;
`service` also `connections.credentials` (live adapters), `cli` also `cli.helpers`.
Never `api` or `web`.

Entry points for the rest of the app:

* `init_app(app)` — called by `create_app`: the app's queue and the shift-write listener.
* `sync_user_now(user, days)` — "sync now" for the API.
* `request_sync(app, connection_ids)` — a sync soon, e.g. right after connecting.
* `start_embedded_worker(app)` — the queue's consumer in this process; returns `stop()`.
* `sync_connection(...)` — the engine itself, for one connection.
"""

from oncal_feed.sync.engine import SyncReport, sync_connection
from oncal_feed.sync.service import run_sync
from oncal_feed.sync.tasks import init_app, request_sync, start_embedded_worker, sync_user_now

__all__ = [
    "SyncReport",
    "init_app",
    "request_sync",
    "run_sync",
    "start_embedded_worker",
    "sync_connection",
    "sync_user_now",
]
