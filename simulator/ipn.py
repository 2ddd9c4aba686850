"""The IPN: aamarPay's server-to-server notification of a finished payment.

When a checkout ends (paid or failed), the simulator POSTs the same fields as the browser's
return to the merchant's listener URL (`--ipn-url`, or the `ipn_url` switch), as JSON (the
documented sample) or as a form. Switches make it arrive late, twice or never; a non-2xx
answer (or none) is retried a few times, a second apart, as a sender that wants delivery
would. Every attempt is recorded (`GET /_sim/ipn`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import httpx

from simulator.gateway import SimConfig

logger = logging.getLogger("simulator.ipn")

RETRY_PAUSE_SECONDS = 1.0


class IpnSender:
    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self._notified: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self.deliveries.clear()
        self._notified.clear()

    def payment_finished(
        self, tran_id: str, fields: dict[str, str], config: SimConfig, default_url: str | None
    ) -> None:
        """Schedule the notification(s) of one payment (once per payment, whatever the
        browser replays)."""
        url = default_url if config.ipn_url is None else config.ipn_url
        if not url or config.ipn_mode == "never" or tran_id in self._notified:
            return
        self._notified.add(tran_id)
        copies = 2 if config.ipn_mode == "twice" else 1
        for copy in range(copies):
            task = asyncio.create_task(self._deliver(url, tran_id, dict(fields), config, copy))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, url: str, tran_id: str, fields: dict[str, str], config: SimConfig, copy: int
    ) -> None:
        await asyncio.sleep(config.ipn_delay_seconds)
        async with httpx.AsyncClient(timeout=10) as client:
            for attempt in range(1, config.ipn_retries + 2):
                entry: dict[str, Any] = {
                    "time": datetime.now(UTC).isoformat(),
                    "tran_id": tran_id,
                    "copy": copy,
                    "attempt": attempt,
                    "url": url,
                }
                try:
                    if config.ipn_format == "json":
                        resp = await client.post(url, json=fields)
                    else:
                        resp = await client.post(url, data=fields)
                    entry["status"] = resp.status_code
                except httpx.HTTPError as exc:
                    entry["error"] = type(exc).__name__
                self.deliveries.append(entry)
                del self.deliveries[:-1000]
                if 200 <= entry.get("status", 0) < 300:
                    return
                logger.info("ipn not accepted: %s", entry)
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
