"""Linked inline artifacts: results kept briefly in the API process, encoded only when fetched.

An inline JSON answer embeds (base64) only the artifacts the caller asked for
with ``?embed=``; every other artifact is a link to
``GET /v1/results/{result_id}/{name}``. The result stays here, un-encoded,
for ``inline_link_seconds`` (at most ``inline_link_max_results`` of them, oldest
dropped first), so an answer whose artifacts nobody downloads costs no PNG
encoding at all. A link is only valid on the API process that answered: behind
a load balancer with several processes, ask for ``embed=all`` (or
``?artifact=``) or route a client's requests to one process.
"""

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from api.problems import Problem
from engine.encoding import Artifact, encode_artifact, has_artifact
from engine.result import Result


def parse_embed(text: str) -> frozenset[str] | None:
    """``none`` -> no names, ``all`` -> None (everything), ``main`` or names -> those names."""
    names = frozenset(part.strip() for part in text.split(",") if part.strip())
    if names == {"all"}:
        return None
    return names - {"none"}


@dataclass
class _Entry:
    result: Result
    tenant: str
    expires: float


class LinkedResults:
    """A bounded, expiring, thread-safe map of result id -> Result."""

    def __init__(self, seconds: float, max_results: int):
        self.seconds, self.max_results = seconds, max_results
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, result: Result, tenant: str) -> str:
        result_id = secrets.token_urlsafe(12)
        now = time.monotonic()
        with self._lock:
            self._drop_expired(now)
            self._entries[result_id] = _Entry(result, tenant, now + self.seconds)
            while len(self._entries) > self.max_results:
                self._entries.popitem(last=False)
        return result_id

    def artifact(self, result_id: str, name: str, tenant: str) -> Artifact:
        with self._lock:
            self._drop_expired(time.monotonic())
            entry = self._entries.get(result_id)
        if entry is None or entry.tenant != tenant:
            raise Problem(404, "unknown_result", f"no inline result {result_id!r} (links last {self.seconds:g} s)")
        if not has_artifact(entry.result, name):
            raise Problem(404, "unknown_artifact", f"inline result {result_id!r} has no artifact {name!r}")
        return encode_artifact(entry.result, name, fast=True)

    def _drop_expired(self, now: float) -> None:
        while self._entries and next(iter(self._entries.values())).expires <= now:
            self._entries.popitem(last=False)
