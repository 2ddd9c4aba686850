"""Run the aamarPay sandbox simulator.

``python -m simulator [--host 127.0.0.1] [--port 8001] [--public-url http://127.0.0.1:8001]``
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal

import uvicorn

from simulator.app import create_app
from simulator.gateway import SimulatorSettings

_SECRET_RE = re.compile(r"(signature_key=)[^&\s\"]*")


class RedactSignatureKey(logging.Filter):
    """Keeps the signature key (sent in trxcheck query strings) out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access formatter unpacks record.args, so redact inside the arguments.
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRET_RE.sub(r"\1***", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = SimulatorSettings.from_env()
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="aamarPay sandbox simulator"
    )
    parser.add_argument("--host", default=os.environ.get("SIMULATOR_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SIMULATOR_PORT", "8001")))
    parser.add_argument(
        "--public-url",
        default=defaults.public_url,
        help="base URL browsers use to reach the simulator (default: the URL each request used)",
    )
    parser.add_argument("--store-id", default=defaults.store_id)
    parser.add_argument(
        "--signature-key",
        default=defaults.signature_key,
        help="accepted signature key (prefer SIMULATOR_SIGNATURE_KEY)",
    )
    parser.add_argument("--usd-rate", type=Decimal, default=defaults.usd_rate)
    parser.add_argument(
        "--ipn-url",
        default=defaults.ipn_url,
        help="the merchant's IPN listener, e.g. http://127.0.0.1:8000/api/payment/ipn/",
    )
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = SimulatorSettings(
        store_id=args.store_id,
        signature_key=args.signature_key,
        public_url=args.public_url.rstrip("/") if args.public_url else None,
        usd_rate=args.usd_rate,
        ipn_url=args.ipn_url or None,
    )
    logging.getLogger("uvicorn.access").addFilter(RedactSignatureKey())
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal with the previous
    # handler in place: make that handler a clean exit (status 0, as for the api).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
