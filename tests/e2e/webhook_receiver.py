"""A webhook receiver on loopback that records deliveries and can fail, or answer slowly, the first few on purpose."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    received: float
    answered: int
    answered_at: float = 0.0  # when its answer went out (after any slow wait)

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    fail_first: int = 0  # answer 500 to this many requests first
    slow_first: int = 0  # wait slow_seconds before answering this many requests first
    slow_seconds: float = 0.0
    deliveries: list[Delivery] = field(default_factory=list)

    def __post_init__(self):
        receiver, lock = self, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with lock:  # requests may overlap: number them in the order they arrived
                    seen = len(receiver.deliveries)
                    status = 500 if seen < receiver.fail_first else 204
                    delivery = Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time(), status)
                    receiver.deliveries.append(delivery)
                if seen < receiver.slow_first:
                    time.sleep(receiver.slow_seconds)
                delivery.answered_at = time.time()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def accepted(self, event_type: str | None = None) -> list[Delivery]:
        return [d for d in self.deliveries if d.answered < 300 and (event_type is None or d.event["type"] == event_type)]

    def wait_for(self, event_type: str, timeout: float = 60) -> Delivery:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.accepted(event_type)
            if found:
                return found[0]
            time.sleep(0.05)
        raise TimeoutError(f"no accepted {event_type} delivery; got {[d.event['type'] for d in self.deliveries]}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
