"""app.tasks.fsbroker: a message of the embedded broker can only be taken whole."""

from __future__ import annotations

import os
from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection

from app.tasks import fsbroker


def test_a_message_is_invisible_until_it_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    with Connection(
        "filesystem://", transport="app.tasks.fsbroker:Transport", transport_options=options
    ) as conn:
        channel = conn.default_channel
        placed: list[str] = []
        real_replace = os.replace

        def replace(src: str, dst: str) -> None:
            # Written, not yet in place: a consumer polling now must find nothing.
            assert Path(src).read_bytes()
            with pytest.raises(Empty):
                channel._get("jobs")
            real_replace(src, dst)
            placed.append(dst)

        monkeypatch.setattr(fsbroker.os, "replace", replace)
        channel._put("jobs", {"body": "hello"})
        assert placed
        assert channel._get("jobs") == {"body": "hello"}
        assert os.listdir(folder) == []
