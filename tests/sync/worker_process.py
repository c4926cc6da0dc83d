"""Run the push-sync worker in a process of its own, against the fakes (for fault tests).

    python -m tests.sync.worker_process CONFIG.json

CONFIG.json holds the app settings; `MSAL_REWRITES` (origin → fake URL) becomes the
msal `http_client` that routes Microsoft's hosts to the fake, which can't travel as
JSON. The process runs Huey's consumer exactly as `oncal-feed worker` does, until it is
killed.
"""

from __future__ import annotations

import json
import sys

from oncal_feed import create_app
from oncal_feed.sync.tasks import get_queue
from tests.fakes.microsoft import LoopbackSession


def main(path: str) -> None:
    """Build the app from CONFIG.json and consume its queue."""
    with open(path) as handle:
        config = json.load(handle)
    rewrites = config.pop("MSAL_REWRITES")
    config["MSAL_CLIENT_OPTIONS"] = {
        "instance_discovery": False,
        "validate_authority": False,
        "http_client": LoopbackSession(rewrites, timeout=10),
    }
    app = create_app(config)
    print("worker ready", flush=True)
    get_queue(app).consumer(workers=2, periodic=False).run()


if __name__ == "__main__":
    main(sys.argv[1])
