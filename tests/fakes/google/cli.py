"""Run the fake Google cloud by hand: ``python -m tests.fakes.google --port 8765``."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from typing import Any

from tests.fakes.google.fake import FakeGoogle
from tests.fakes.google.model import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REDIRECT_URI


def main(argv: list[str] | None = None) -> int:
    """Run the fake until Ctrl-C (``python -m tests.fakes.google --port 8765``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument(
        "--redirect-uri", action="append", help=f"repeatable; default {DEFAULT_REDIRECT_URI}"
    )
    parser.add_argument("--time-zone", default="UTC", help="default zone for new users")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit-rate", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--drop-after-commit-rate", type=float, default=0.0)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    fake = FakeGoogle(args.host, args.port, seed=args.seed, verbose=args.verbose)
    fake.default_time_zone = args.time_zone
    fake.faults.error_rate = args.error_rate
    fake.faults.rate_limit_rate = args.rate_limit_rate
    fake.faults.drop_rate = args.drop_rate
    fake.faults.drop_after_commit_rate = args.drop_after_commit_rate
    redirect_uris = args.redirect_uri or [DEFAULT_REDIRECT_URI]
    fake.register_client(args.client_id, args.client_secret, redirect_uris)
    fake.start()
    out = sys.stdout
    out.write(
        f"Fake Google listening on {fake.url}\n"
        f"  auth_uri      {fake.auth_uri}\n"
        f"  token_uri     {fake.token_uri}\n"
        f"  revoke_uri    {fake.revoke_uri}\n"
        f"  api_endpoint  {fake.api_endpoint}\n"
        f"  batch_uri     {fake.batch_uri}\n"
        f"  client_id     {args.client_id}\n"
        f"  client_secret {args.client_secret}\n"
        f"  redirect_uris {' '.join(redirect_uris)}\n"
        "Set OAUTHLIB_INSECURE_TRANSPORT=1 in the app (http:// token URL). Ctrl-C stops.\n"
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
