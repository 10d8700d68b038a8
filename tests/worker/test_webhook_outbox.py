"""A job's webhook outbox drained in a real Redis to a real loopback receiver: order, backoff, drops, the lock."""

import json
import threading
import time

import pytest

from tests.e2e.webhook_receiver import Receiver
from worker.settings import Settings
from worker.webhooks import Outbox, drain, new_entry

JOB = "job-1"


@pytest.fixture
def outbox(redis_client):
    return Outbox(redis_client)


@pytest.fixture
def settings():
    return Settings(webhook_secret="secret", webhook_allow_private=True, webhook_retry_base_seconds=0.2, webhook_max_attempts=3)


def push(outbox: Outbox, url: str, n: int) -> str:
    message_id = f"msg_{n}"
    outbox.push(JOB, new_entry(message_id, url, json.dumps({"n": n})), 600)
    return message_id


def drain_until_empty(outbox: Outbox, settings: Settings) -> None:
    """What the task's retries do: drain, wait as told, drain again."""
    for _ in range(20):
        wait = drain(outbox, JOB, settings)
        if wait is None:
            return
        time.sleep(wait)
    raise AssertionError("the outbox never emptied")


def seen(receiver: Receiver) -> list[tuple[str, int, int]]:
    return [(d.headers["webhook-id"], d.event["n"], d.answered) for d in receiver.deliveries]


def test_drain_delivers_the_outbox_oldest_first_and_leaves_it_empty_and_unlocked(outbox, settings, redis_client):
    receiver = Receiver()
    try:
        ids = [push(outbox, receiver.url, n) for n in range(3)]
        assert drain(outbox, JOB, settings) is None
        assert seen(receiver) == [(ids[0], 0, 204), (ids[1], 1, 204), (ids[2], 2, 204)]
        assert outbox.head(JOB) is None and redis_client.exists(*outbox.keys(JOB)) == 0
    finally:
        receiver.close()


def test_a_failed_head_stays_first_backs_off_and_keeps_its_id(outbox, settings):
    receiver = Receiver(fail_first=1)
    try:
        first, second = push(outbox, receiver.url, 0), push(outbox, receiver.url, 1)
        wait = drain(outbox, JOB, settings)
        assert 0 < wait <= 0.2  # base * 2**0, less the time since the attempt
        assert seen(receiver) == [(first, 0, 500)]
        _, head = outbox.head(JOB)
        assert (head["id"], head["attempts"]) == (first, 1)
        assert 0 < drain(outbox, JOB, settings) <= wait  # not due yet: nothing sent, the second still waits
        assert len(receiver.deliveries) == 1
        time.sleep(wait)
        assert drain(outbox, JOB, settings) is None
        assert seen(receiver) == [(first, 0, 500), (first, 0, 204), (second, 1, 204)]
    finally:
        receiver.close()


def test_a_delivery_given_up_on_or_refused_is_dropped_so_later_events_follow(outbox, settings):
    receiver = Receiver(fail_first=3)  # webhook_max_attempts = 3
    try:
        given_up = push(outbox, receiver.url, 0)
        push(outbox, "ftp://example.com/hook", 1)  # refused before any attempt
        last = push(outbox, receiver.url, 2)
        drain_until_empty(outbox, settings)
        assert seen(receiver) == [(given_up, 0, 500)] * 3 + [(last, 2, 204)]
        gaps = [b.received - a.received for a, b in zip(receiver.deliveries, receiver.deliveries[1:3])]
        assert 0.2 <= gaps[0] and 0.4 <= gaps[1]  # 0.2 s, then 0.4 s
    finally:
        receiver.close()


def test_a_task_finding_the_lock_taken_leaves_the_outbox_and_comes_back_when_the_lock_would_expire(outbox, settings):
    receiver = Receiver()
    try:
        assert outbox.lock(JOB, "another-task", 3.0)
        assert drain(outbox, JOB, settings) is None  # nothing to deliver: no need to come back
        message_id = push(outbox, receiver.url, 0)
        assert 1.0 < drain(outbox, JOB, settings) <= 3.1  # about 3 s: just after the lock expires
        assert receiver.deliveries == [] and outbox.head(JOB)[1]["id"] == message_id
        outbox.unlock(JOB, "another-task")
        assert drain(outbox, JOB, settings) is None
        assert seen(receiver) == [(message_id, 0, 204)]
    finally:
        receiver.close()


def test_events_pushed_while_a_delivery_is_in_flight_wait_for_it_and_go_with_the_holder(outbox, settings):
    receiver = Receiver(slow_first=1, slow_seconds=0.5)
    try:
        first = push(outbox, receiver.url, 0)
        holder = threading.Thread(target=drain, args=(outbox, JOB, settings))
        holder.start()
        deadline = time.monotonic() + 5
        while not receiver.deliveries and time.monotonic() < deadline:
            time.sleep(0.01)
        second = push(outbox, receiver.url, 1)
        assert drain(outbox, JOB, settings) > 0  # the second's own task: the lock is taken, it comes back later
        holder.join(5)
        assert seen(receiver) == [(first, 0, 204), (second, 1, 204)]
        assert receiver.deliveries[1].received >= receiver.deliveries[0].answered_at  # one at a time
        assert outbox.head(JOB) is None
    finally:
        receiver.close()


class DrippingReceiver:
    """A loopback receiver that drips, one byte every ``every`` seconds: its body after an at-once 200 (``head=False``),
    or its status line and headers themselves (``head=True``). Neither ends in a test's time."""

    def __init__(self, length: int = 10**9, every: float = 0.2, head: bool = False):
        import socket

        self.server = socket.create_server(("127.0.0.1", 0))
        self.length, self.every, self.head, self.closed = length, every, head, threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"

    def _serve(self):
        while not self.closed.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection):
        with connection:
            connection.recv(65536)
            if self.head:  # the status line a byte at a time, then a header line that never ends
                at_once, dripped = b"", b"HTTP/1.1 200 OK\r\nx-padding: "
            else:
                at_once, dripped = f"HTTP/1.1 200 OK\r\ncontent-length: {self.length}\r\n\r\n".encode(), b""
            try:
                connection.sendall(at_once)
                sent = 0
                while not self.closed.is_set():
                    connection.sendall(dripped[sent : sent + 1] or b"x")
                    sent += 1
                    time.sleep(self.every)
            except OSError:
                return  # the client hung up: what a delivery that does not read the body does

    def close(self):
        self.closed.set()
        self.server.close()


def attempt_in_thread(settings: Settings, url: str) -> tuple[list, float]:
    """``attempt`` run in a thread joined for at most 10 s: its outcome (empty if still running) and how long it took."""
    from worker.webhooks import attempt

    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(attempt(settings, new_entry("msg_drip", url, "{}"))), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "the attempt was still talking to the receiver after 10 s"
    return outcome, time.monotonic() - started


def test_a_receiver_answering_2xx_with_an_endless_body_is_delivered_without_reading_it(settings):
    """The status line is the answer: a body that drips (or is huge) never holds the attempt past its lock or fills memory."""
    receiver = DrippingReceiver()
    try:
        outcome, took = attempt_in_thread(settings.model_copy(update={"webhook_timeout_seconds": 1.0}), receiver.url)
        assert outcome == [None] and took < 3  # delivered: not retried
    finally:
        receiver.close()


def test_a_receiver_dripping_its_status_line_and_headers_fails_the_attempt_at_its_deadline_and_is_retried(settings):
    """Each read's timeout alone never ends a receiver that sends a byte every 0.2 s: the whole attempt has
    ``webhook_timeout_seconds``, then it counts as failed (backoff, same id) and a normal receiver still gets its delivery."""
    dripping, receiver = DrippingReceiver(every=0.2, head=True), Receiver()
    quick = settings.model_copy(update={"webhook_timeout_seconds": 1.0})
    try:
        outcome, took = attempt_in_thread(quick, dripping.url)
        assert 1.0 <= took < 2.0
        [retry] = outcome
        assert (retry["id"], retry["attempts"]) == ("msg_drip", 1) and retry["not_before"] > time.time()
        assert attempt_in_thread(quick, receiver.url)[0] == [None]
        assert [(d.headers["webhook-id"], d.answered) for d in receiver.deliveries] == [("msg_drip", 204)]
    finally:
        dripping.close()
        receiver.close()
