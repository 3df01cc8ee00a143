"""Server-Sent Events: an incremental parser (the WHATWG event-stream rules) and a resuming stream (API.md §12)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched frame: `event` defaults to "message"; `id` is the last id seen (it carries over)."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


@dataclass
class SSEDecoder:
    """Feed it bytes as they arrive, in chunks of any size; it yields each complete event.

    Lines end in CRLF, LF or CR; a leading BOM is dropped; `:` lines are comments; `data` lines
    join with newlines; a blank line dispatches (nothing if no data arrived); an `id` containing
    NUL is ignored; `retry` takes digits only. `last_event_id` and `retry` persist across events.
    """

    last_event_id: str | None = None
    retry: int | None = None
    _buffer: bytes = b""
    _started: bool = False
    _pending_cr: bool = False
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _retry_changed: bool = False

    def feed(self, chunk: bytes) -> Iterator[ServerSentEvent]:
        if not chunk:
            return
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split across chunks
        self._pending_cr = False
        self._buffer += chunk
        if not self._started:
            if len(self._buffer) < 3 and b"\xef\xbb\xbf".startswith(self._buffer):
                return  # maybe the start of a BOM: wait for more
            self._started = True
            if self._buffer.startswith(b"\xef\xbb\xbf"):
                self._buffer = self._buffer[3:]
        while True:
            line, ending = _split_line(self._buffer)
            if line is None:
                return
            self._buffer = self._buffer[len(line) + len(ending) :]
            if ending == b"\r" and not self._buffer:
                self._pending_cr = True
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                yield event

    def _line(self, line: str) -> ServerSentEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(data="\n".join(data), event=event or "message", id=self.last_event_id, retry=self.retry)


def _split_line(buffer: bytes) -> tuple[bytes | None, bytes]:
    """The first complete line of `buffer` and its ending, or (None, b"") when none is complete yet."""
    match = _LINE_END.search(buffer)
    if match is None:
        return None, b""
    return buffer[: match.start()], match.group()


def iter_events(chunks: Iterable[bytes], decoder: SSEDecoder | None = None) -> Iterator[ServerSentEvent]:
    """Every event in a stream of byte chunks."""
    decoder = decoder or SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)


@dataclass(frozen=True)
class Event:
    """A DomainEvent received over SSE (§12): `type` is `eventType`, `data` the parsed JSON."""

    id: str | None
    type: str
    data: dict[str, Any]

    @property
    def payload(self) -> dict[str, Any]:
        return self.data.get("payload") or {}

    @classmethod
    def from_sse(cls, frame: ServerSentEvent) -> Event:
        try:
            data = json.loads(frame.data)
        except ValueError:
            data = {"raw": frame.data}
        if not isinstance(data, dict):
            data = {"value": data}
        return cls(id=frame.id, type=frame.event, data=data)
