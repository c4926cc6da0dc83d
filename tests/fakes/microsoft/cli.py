"""Run the fake Microsoft cloud by hand: ``python -m tests.fakes.microsoft --port 8766``."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from typing import Any

from tests.fakes.microsoft.fake import FakeMicrosoft
from tests.fakes.microsoft.model import (
    DEFAULT_AUTHORITY_HOST,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REDIRECT_URI,
)


def main(argv: list[str] | None = None) -> int:
    """Run the fake until Ctrl-C (``python -m tests.fakes.microsoft --port 8766``)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument(
        "--redirect-uri", action="append", help=f"repeatable; default {DEFAULT_REDIRECT_URI}"
    )
    parser.add_argument("--authority-host", default=DEFAULT_AUTHORITY_HOST)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit-rate", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--drop-after-commit-rate", type=float, default=0.0)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    fake = FakeMicrosoft(
        args.host,
        args.port,
        seed=args.seed,
        verbose=args.verbose,
        authority_host=args.authority_host,
    )
    fake.faults.error_rate = args.error_rate
    fake.faults.rate_limit_rate = args.rate_limit_rate
    fake.faults.drop_rate = args.drop_rate
    fake.faults.drop_after_commit_rate = args.drop_after_commit_rate
    redirect_uris = args.redirect_uri or [DEFAULT_REDIRECT_URI]
    fake.register_client(args.client_id, args.client_secret, redirect_uris)
    fake.start()
    out = sys.stdout
    out.write(
        f"Fake Microsoft listening on {fake.url}\n"
        f"  MICROSOFT_CLIENT_ID={args.client_id}\n"
        f"  MICROSOFT_CLIENT_SECRET={args.client_secret}\n"
        "  MICROSOFT_TENANT_ID=common\n"
        f"  MICROSOFT_AUTHORITY_HOST={fake.authority_host}\n"
        f"  GRAPH_ENDPOINT={fake.graph_endpoint}\n"
        f"  redirect URIs: {' '.join(redirect_uris)}\n"
        f"  consent page:  {fake.url}/common/oauth2/v2.0/authorize?...\n"
        "msal requires an https authority: give ConfidentialClientApplication an\n"
        f"http_client that sends {fake.authority_host} to {fake.url}\n"
        "(tests.fakes.microsoft.LoopbackSession does that). Ctrl-C stops.\n"
    )
    out.flush()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGTERM (e.g. from a test harness or `kill`) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, on_term)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
    fake.stop()
    return 0
