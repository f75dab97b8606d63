"""Local HTTP servers that speak the parts of the Twilio and SendGrid APIs careloop uses.

The real SDKs talk to these over loopback, so tests see the exact requests the SDKs make.
Faults are queued per server: each request takes the next fault, if any (429 with Retry-After,
500, a slow answer, or a stall longer than the client's timeout). Numbers in ``opted_out``
answer Twilio's 21610, malformed ones 21211. Every request and every accepted message is
recorded with its arrival time.

As unkind as Twilio where it matters: a created message is ``queued`` with no ``date_sent``
(and, sent through a Messaging Service, no ``from``) until Twilio sends it; the list's
``DateSent>`` filter leaves such a message out; lists come newest first, a page at a time.
With ``auto_release`` off, messages and calls stay queued until ``release()``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from campaigns.sms import segment_count

E164 = re.compile(r"^\+[1-9]\d{7,14}$")
ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token"
SENDGRID_KEY = "SG.test-key"
SERVICE_NUMBER = "+15550009999"  # the number a Messaging Service picks as it sends


@dataclass
class Fault:
    status: int | None = None  # answer with this status (429, 500, ...)
    retry_after: int | None = None
    delay: float = 0.0  # seconds to wait before answering
    handled: bool = False  # the request is carried out all the same, then answered with status


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    body: Any
    headers: dict[str, str]
    at: float


@dataclass
class FakeState:
    faults: deque[Fault] = field(default_factory=deque)
    opted_out: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)  # SendGrid refuses a batch holding one
    latency: float = 0.0  # seconds added to every POST
    auto_release: bool = True  # Twilio sends what it queued at once (else: release())
    list_latency: float = 0.0  # seconds added to every GET
    lists_in_flight: int = 0
    most_lists_in_flight: int = 0
    requests: list[Recorded] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: threading.Condition = field(init=False)
    event_sink: Any = None  # SendGrid: called with the events its webhook would post
    gate: threading.Event | None = None  # when given, every POST waits for it to open
    arrived: threading.Event = field(default_factory=threading.Event)  # a POST waits there

    def __post_init__(self) -> None:
        self.accepted = threading.Condition(self.lock)

    def wait_for(self, count: int, timeout: float = 60.0) -> bool:
        """Block until at least ``count`` messages were accepted (observed progress)."""
        with self.accepted:
            return self.accepted.wait_for(lambda: len(self.messages) >= count, timeout)

    def next_fault(self) -> Fault | None:
        with self.lock:
            return self.faults.popleft() if self.faults else None

    def accepted_times(self) -> list[float]:
        with self.lock:
            return [m["_at"] for m in self.messages]


class _Handler(BaseHTTPRequestHandler):
    server: _FakeServer
    protocol_version = "HTTP/1.1"
    # Headers and body leave as one write, and without Nagle: otherwise each answer waits
    # for the client's delayed ACK (about 40 ms), which is no API's behaviour.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read(self) -> tuple[bytes, Recorded]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlparse(self.path)
        is_json = "json" in (self.headers.get("Content-Type") or "")
        record = Recorded(
            self.command,
            url.path,
            parse_qs(url.query),
            {} if is_json else parse_qs(raw.decode()),
            json.loads(raw) if is_json and raw else None,
            dict(self.headers.items()),
            time.monotonic(),
        )
        with self.server.state.lock:
            self.server.state.requests.append(record)
        return raw, record

    _silent = False  # a handled fault: the API's own answer is not sent

    def _answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        if self._silent:
            return
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _apply_fault(self, record: Recorded) -> bool:
        fault = self.server.state.next_fault()
        if fault is None:
            return False
        time.sleep(fault.delay)
        if fault.status is None:
            return False
        if fault.handled:  # e.g. a gateway's 502 after the server created the message
            self._silent = True
            try:
                self.server.api.post(self, record)
            finally:
                self._silent = False
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        self._answer(
            fault.status,
            {
                "code": 20429 if fault.status == 429 else 20500,
                "message": "injected fault",
                "status": fault.status,
            },
            headers,
        )
        return True

    def do_GET(self) -> None:
        _, record = self._read()
        state = self.server.state
        with state.lock:
            state.lists_in_flight += 1
            state.most_lists_in_flight = max(state.most_lists_in_flight, state.lists_in_flight)
        try:
            time.sleep(state.list_latency)
            if record.path != "/_stats" and not self.server.api.authorized(record):
                self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
                return
            self.server.api.get(self, record)
        finally:
            with state.lock:
                state.lists_in_flight -= 1

    def do_POST(self) -> None:
        _, record = self._read()
        if not self.server.api.authorized(record):
            self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return
        time.sleep(self.server.state.latency)
        if self.server.state.gate is not None:
            self.server.state.arrived.set()
            self.server.state.gate.wait(timeout=600)
        if self._apply_fault(record):
            return
        self.server.api.post(self, record)


class _FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, api: Any) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api = api
        self.state = api.state

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class TwilioApi:
    def __init__(self) -> None:
        self.state = FakeState()

    def authorized(self, record: Recorded) -> bool:
        expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        return record.headers.get("Authorization") == f"Basic {expected}"

    def post(self, handler: _Handler, record: Recorded) -> None:
        form = {k: v[0] for k, v in record.form.items()}
        to = form.get("To", "")
        if not E164.match(to):
            handler._answer(
                400, {"code": 21211, "message": f"Invalid 'To' Phone Number: {to}", "status": 400}
            )
            return
        if to in self.state.opted_out:
            handler._answer(
                400,
                {
                    "code": 21610,
                    "message": "Attempt to send to unsubscribed recipient",
                    "status": 400,
                },
            )
            return
        kind = "Calls" if record.path.endswith("/Calls.json") else "Messages"
        sid = ("CA" if kind == "Calls" else "SM") + uuid.uuid4().hex
        now = datetime.now(UTC)
        body = form.get("Body")
        message = {
            "sid": sid,
            "account_sid": ACCOUNT_SID,
            "to": to,
            "from": form.get("From"),  # None through a Messaging Service, until sent
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": body,
            "status": "queued",
            "direction": "outbound-api",
            "num_segments": str(segment_count(body)) if body is not None else None,
            "date_created": _rfc2822(now),
            "date_sent": None,
            "start_time": None,
            "uri": f"{record.path[:-5]}/{sid}.json",
            "_kind": kind,
            "_at": record.at,
            "_created": now,
            "_sent": None,
        }
        answer = {k: v for k, v in message.items() if not k.startswith("_")}
        with self.state.lock:
            self.state.messages.append(message)
            if self.state.auto_release:
                _release(message, now)
            self.state.accepted.notify_all()
        handler._answer(201, answer)

    def release(self) -> None:
        """Twilio sends everything still queued."""
        now = datetime.now(UTC)
        with self.state.lock:
            for message in self.state.messages:
                if message["status"] == "queued":
                    _release(message, now)

    def get(self, handler: _Handler, record: Recorded) -> None:
        if record.path == "/_stats":
            handler._answer(200, self.stats())
            return
        kind = "Calls" if record.path.endswith("/Calls.json") else "Messages"
        to = _first(record.query.get("To"))
        after = _first(record.query.get("DateSent>") or record.query.get("StartTime>"))
        since = (
            datetime.strptime(after, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if after else None
        )
        size = int(_first(record.query.get("PageSize")) or 50)
        with self.state.lock:
            found = [
                m
                for m in self.state.messages
                if m["_kind"] == kind
                and (to is None or m["to"] == to)
                # Twilio's date filters leave out what has no date_sent (start_time) yet.
                and (since is None or (m["_sent"] is not None and m["_sent"] >= since))
            ]
            found.sort(key=lambda m: m["_created"], reverse=True)
            listed = [{k: v for k, v in m.items() if not k.startswith("_")} for m in found[:size]]
        handler._answer(
            200,
            {
                kind.lower(): listed,
                "first_page_uri": record.path,
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "uri": record.path,
            },
        )

    def stats(self) -> dict[str, Any]:
        """Accepted messages, distinct recipients and the most accepted in any one second, in
        messages and in SMS segments (what a sender's rate is measured in)."""
        with self.state.lock:
            sent = sorted((m["_at"], int(m["num_segments"] or 1)) for m in self.state.messages)
            recipients = len({m["to"] for m in self.state.messages})
        return {
            "accepted": len(sent),
            "recipients": recipients,
            "busiest_second": busiest_second([(at, 1) for at, _ in sent]),
            "busiest_second_segments": busiest_second(sent),
        }

    def sent_to(self, to: str) -> list[dict[str, Any]]:
        with self.state.lock:
            return [m for m in self.state.messages if m["to"] == to]


class SendGridApi:
    def __init__(self) -> None:
        self.state = FakeState()

    def authorized(self, record: Recorded) -> bool:
        return record.headers.get("Authorization") == f"Bearer {SENDGRID_KEY}"

    def post(self, handler: _Handler, record: Recorded) -> None:
        body = record.body or {}
        personalizations = body.get("personalizations") or []
        bad = [
            p["to"][0]["email"]
            for p in personalizations
            if "@" not in p["to"][0]["email"] or p["to"][0]["email"] in self.state.rejected
        ]
        if bad or not 1 <= len(personalizations) <= 1000:
            handler._answer(
                400,
                {"errors": [{"message": f"invalid recipients {bad}", "field": "personalizations"}]},
            )
            return
        message_id = uuid.uuid4().hex[:22]
        with self.state.lock:
            for p in personalizations:
                self.state.messages.append(
                    {
                        "message_id": message_id,
                        "to": p["to"][0]["email"],
                        "personalization": p,
                        "_at": record.at,
                    }
                )
            self.state.accepted.notify_all()
        handler._answer(202, None, {"X-Message-Id": message_id})
        if self.state.event_sink:
            shared = body.get("custom_args") or {}  # a mail's own custom args reach every event
            self.state.event_sink(
                [
                    processed_event(
                        {**p, "custom_args": {**shared, **p.get("custom_args", {})}}, message_id
                    )
                    for p in personalizations
                ]
            )

    def get(self, handler: _Handler, record: Recorded) -> None:
        handler._answer(404, {"errors": [{"message": "not found"}]})


def processed_event(personalization: dict[str, Any], message_id: str) -> dict[str, Any]:
    """A SendGrid ``processed`` event as its webhook posts it: custom args at the top level, no
    field of ours but those, and an sg_message_id that starts with the X-Message-Id."""
    return {
        "email": personalization["to"][0]["email"],
        "timestamp": int(time.time()),
        "event": "processed",
        "sg_event_id": uuid.uuid4().hex,
        "sg_message_id": f"{message_id}.filterdrecv-{uuid.uuid4().hex[:8]}.0",
        **personalization.get("custom_args", {}),
    }


def busiest_second(arrivals: list[tuple[float, int]]) -> int:
    """The most units that arrived within any one second: (arrival time, units) pairs."""
    busiest, start, inside = 0, 0, 0
    for at, units in arrivals:
        inside += units
        while at - arrivals[start][0] >= 1.0:
            inside -= arrivals[start][1]
            start += 1
        busiest = max(busiest, inside)
    return busiest


def _rfc2822(moment: datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S +0000")


def _release(message: dict[str, Any], now: datetime) -> None:
    """What Twilio does as it sends: a status, the send time and (for a service) a number."""
    message["status"] = "sent" if message["_kind"] == "Messages" else "completed"
    message["_sent"] = now
    message["date_sent"] = _rfc2822(now) if message["_kind"] == "Messages" else None
    message["start_time"] = _rfc2822(now) if message["_kind"] == "Calls" else None
    message["from"] = message["from"] or SERVICE_NUMBER


def _first(values: list[str] | None) -> str | None:
    return values[0] if values else None


@contextmanager
def serve(api: Any) -> Iterator[tuple[str, Any]]:
    server = _FakeServer(api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url, api
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    """``python -m tests.fakes twilio|sendgrid LATENCY``: serve until killed, printing the URL
    first."""
    import sys

    api: TwilioApi | SendGridApi = SendGridApi() if sys.argv[1] == "sendgrid" else TwilioApi()
    api.state.latency = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    server = _FakeServer(api)
    print(server.url, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
