"""The embedded broker: kombu's filesystem transport, with messages that appear whole.

kombu writes a message by creating its file in the queue folder and then writing into it, and
takes one by moving the file away and reading it, without the writer's lock: a worker that
looks at the wrong moment takes an empty file, fails to decode it and the job is lost (the
load smoke test hit it: the worker's consumer died on a JSONDecodeError of an empty payload).
Here a message is written under a name no consumer looks at, and renamed into place (atomic
on one filesystem) once it is complete.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # Starts with a dot: kombu takes only '<anything>.<queue>.msg' after the first dot.
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb", buffering=0) as fh:
                fh.write(str_to_bytes(dumps(payload)))  # type: ignore[no-untyped-call]
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
