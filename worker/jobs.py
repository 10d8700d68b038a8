"""Job records: ours, one Redis hash per job, written before the task is sent.

Celery's result backend reports any unknown id as PENDING, so existence,
state, progress and artifacts live here instead. Every state change is one
Lua script (atomic with the checks it depends on) that also publishes an
event on the job's channel for the SSE stream.

States: queued -> running -> succeeded | failed | cancelled; queued -> cancelled;
queued -> aborted (its deadline to start passed before a worker reached it).
"""

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "aborted")
FINISHED = frozenset({"succeeded", "failed", "cancelled", "aborted"})
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_JSON_FIELDS = ("params", "inputs", "progress", "error", "artifacts", "result", "webhook")
_TIME_FIELDS = ("created_at", "started_at", "finished_at", "cancel_requested_at", "deadline_at")

_CREATE = """
local existing = redis.call('GET', KEYS[3])
if existing then
  local state = redis.call('HGET', ARGV[3] .. existing, 'state')
  if state and state ~= 'failed' and state ~= 'cancelled' and state ~= 'aborted' then return existing end
end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""

_START = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing', 0} end
if state ~= 'queued' and state ~= 'running' then return {'finished', 0} end
local deadline = redis.call('HGET', KEYS[1], 'deadline_at')
if state == 'queued' and deadline and tonumber(ARGV[1]) > tonumber(deadline) then
  redis.call('HSET', KEYS[1], 'state', 'aborted', 'finished_at', ARGV[1], 'error', ARGV[6])
  redis.call('PUBLISH', ARGV[4], 'state')
  return {'aborted', 0}
end
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1])
  redis.call('PUBLISH', ARGV[4], 'state')
  return {'cancelled', 0}
end
local n = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
if n > tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', ARGV[1], 'error', ARGV[5])
  redis.call('PUBLISH', ARGV[4], 'state')
  return {'poisoned', n}
end
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[1], 'worker', ARGV[3])
redis.call('PUBLISH', ARGV[4], 'state')
return {'run', n}
"""

_PROGRESS = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 1 end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'progress', ARGV[1])
  redis.call('PUBLISH', ARGV[3], 'progress')
end
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return 1 end
return 0
"""

_FINISH = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return false end
local fields = {'state', ARGV[3], 'finished_at', ARGV[4]}
if ARGV[3] == 'succeeded' and redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  fields[2] = 'cancelled'
else
  for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[2]) == redis.call('HGET', KEYS[1], 'id') then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
redis.call('PUBLISH', ARGV[2], 'state')
return fields[2]
"""

_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1], 'cancel_requested', '1', 'cancel_requested_at', ARGV[1])
  redis.call('PUBLISH', ARGV[2], 'state')
  return 'cancelled'
end
if state == 'running' then
  local asked = redis.call('HGET', KEYS[1], 'cancel_requested_at')
  if not asked then
    redis.call('HSET', KEYS[1], 'cancel_requested', '1', 'cancel_requested_at', ARGV[1])
    redis.call('PUBLISH', ARGV[2], 'progress')
    return 'requested'
  end
  local grace = tonumber(ARGV[3])
  if grace < 0 or tonumber(ARGV[1]) - tonumber(asked) < grace then return 'requested' end
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1])
  redis.call('PUBLISH', ARGV[2], 'state')
  return 'terminate'
end
return 'finished'
"""


def new_job_id() -> str:
    """Time-ordered ids (nanoseconds, then randomness): lexical order is creation order."""
    return f"{time.time_ns():016x}{secrets.token_hex(4)}"


@dataclass
class Job:
    id: str
    method: str
    model: str
    queue: str
    params: dict[str, Any]
    inputs: dict[str, str | list[str]]
    content_hash: str
    state: str = "queued"
    deliveries: int = 0
    cancel_requested: bool = False
    cancel_requested_at: float | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    progress: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    worker: str | None = None
    deadline_at: float | None = None  # a job still queued then ends aborted
    webhook: dict[str, Any] | None = None  # {"url", "events"}: see worker.webhooks

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def input_ids(self) -> list[str]:
        return [i for value in self.inputs.values() for i in (value if isinstance(value, list) else [value])]

    def to_fields(self) -> dict[str, str]:
        return {name: _dump(name, value) for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_fields(cls, raw: dict[str | bytes, str | bytes]) -> "Job":
        """The job from its Redis hash (as read, bytes or text)."""
        values: dict[str, Any] = {}
        for name, text in ((_text(k), _text(v)) for k, v in raw.items()):
            if name in _JSON_FIELDS:
                values[name] = json.loads(text) if text else None
            elif name in _TIME_FIELDS:
                values[name] = float(text) if text else None
            elif name == "deliveries":
                values[name] = int(text)
            elif name == "cancel_requested":
                values[name] = text == "1"
            elif name in cls.__dataclass_fields__:
                values[name] = text
        values.setdefault("artifacts", [])
        return cls(**values)


def _dump(name: str, value: Any) -> str:
    if name in _JSON_FIELDS:
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(value) if isinstance(value, float) else str(value)


def _flat(fields: dict[str, str]) -> list[str]:
    return [part for pair in fields.items() for part in pair]


class JobStore:
    """Job records in Redis; every method is one round trip."""

    def __init__(self, client: redis.Redis, ttl_seconds: int, prefix: str = "convlens"):
        self.redis, self.ttl, self.prefix = client, ttl_seconds, prefix
        self.index = f"{prefix}:jobs"
        self._create = client.register_script(_CREATE)
        self._start = client.register_script(_START)
        self._progress = client.register_script(_PROGRESS)
        self._finish = client.register_script(_FINISH)
        self._cancel = client.register_script(_CANCEL)

    def key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def channel(self, job_id: str) -> str:
        return f"{self.prefix}:events:{job_id}"

    def _dedup_key(self, content_hash: str) -> str:
        return f"{self.prefix}:dedup:{content_hash}"

    def ping(self) -> None:
        self.redis.ping()

    def create(self, job: Job) -> tuple[Job, bool]:
        """Store a new queued job, unless an identical one exists that did not fail or get cancelled.

        Returns the job that stands for the request and whether it is the new one.
        """
        keys = [self.key(job.id), self.index, self._dedup_key(job.content_hash)]
        winner = _text(self._create(keys=keys, args=[job.id, self.ttl, f"{self.prefix}:job:", *_flat(job.to_fields())]))
        if winner == job.id:
            return job, True
        existing = self.get(winner)
        return (existing, False) if existing is not None else self.create(job)

    def get(self, job_id: str) -> Job | None:
        raw = self.redis.hgetall(self.key(job_id))
        return Job.from_fields(raw) if raw else None

    def remove(self, job_id: str) -> None:
        """Forget a job that could not be queued (its task was never sent)."""
        job = self.get(job_id)
        pipe = self.redis.pipeline()
        pipe.delete(self.key(job_id))
        pipe.zrem(self.index, job_id)
        if job is not None:
            pipe.delete(self._dedup_key(job.content_hash))
        pipe.execute()

    def list(self, state: str | None = None, limit: int = 20, cursor: str | None = None) -> tuple[list[Job], str | None]:
        """Jobs newest first, optionally of one state; ``cursor`` is the last id of the previous page."""
        found: list[Job] = []
        upper = f"({cursor}" if cursor else "+"
        while len(found) < limit:
            ids = [_text(i) for i in self.redis.zrevrangebylex(self.index, upper, "-", start=0, num=max(limit, 50))]
            if not ids:
                return found, None
            pipe = self.redis.pipeline()
            for job_id in ids:
                pipe.hgetall(self.key(job_id))
            expired = []
            for job_id, raw in zip(ids, pipe.execute()):
                if not raw:
                    expired.append(job_id)
                    continue
                job = Job.from_fields(raw)
                if state is None or job.state == state:
                    found.append(job)
                    if len(found) == limit:
                        return found, job.id
            if expired:
                self.redis.zrem(self.index, *expired)
            upper = f"({ids[-1]}"
        return found, None

    # -- worker side -------------------------------------------------------

    def start(self, job_id: str, max_deliveries: int, worker: str) -> tuple[str, int]:
        """Claim a delivery: ("run", n) to run it, else why not (missing, finished, cancelled, aborted, poisoned)."""
        poison = json.dumps({
            "code": "poison_pill",
            "message": f"the job was delivered more than {max_deliveries} times; every attempt ended its worker",
        })
        late = json.dumps({"code": "deadline_passed", "message": "the job had not started by its deadline"})
        action, deliveries = self._start(
            keys=[self.key(job_id)], args=[repr(time.time()), max_deliveries, worker, self.channel(job_id), poison, late]
        )
        return _text(action), int(deliveries)

    def report_progress(self, job_id: str, progress: dict[str, Any], store: bool = True) -> bool:
        """Store progress (when ``store``); True when the job should stop (cancel requested or gone)."""
        payload = json.dumps(progress, separators=(",", ":"))
        return bool(self._progress(keys=[self.key(job_id)], args=[payload, "1" if store else "0", self.channel(job_id)]))

    def finish(self, job: Job, state: str, **fields: Any) -> str | None:
        """Move a running job to a final state; returns the state it ended in, None when it was not running any more.

        A job whose cancel was requested never ends ``succeeded``: it ends
        ``cancelled`` (without ``fields``), even though its method returned.
        """
        assert state in FINISHED
        flat = _flat({name: _dump(name, value) for name, value in fields.items()})
        keys = [self.key(job.id), self._dedup_key(job.content_hash)]
        ended = self._finish(keys=keys, args=[self.ttl, self.channel(job.id), state, repr(time.time()), *flat])
        return _text(ended) if ended else None

    def fail(self, job: Job, code: str, message: str) -> str | None:
        return self.finish(job, "failed", error={"code": code, "message": message})

    # -- API side ------------------------------------------------------------

    def cancel(self, job_id: str, grace_seconds: float = -1) -> str:
        """Cancel a job, or ask it to stop; returns what happened.

        - ``cancelled``: it was queued, and now never runs;
        - ``requested``: it is running and is asked to stop at its next
          progress report (the first request starts the grace period);
        - ``terminate``: it was asked at least ``grace_seconds`` ago (negative:
          never) and still runs; it is now recorded cancelled, and the caller
          must end its process;
        - ``finished`` or ``missing``.
        """
        return _text(self._cancel(keys=[self.key(job_id)], args=[repr(time.time()), self.channel(job_id), grace_seconds]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def connect(settings) -> redis.Redis:
    """A Redis client that fails fast: short timeouts and one immediate retry (a stale pooled connection)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_connect_timeout,
        socket_timeout=settings.redis_socket_timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )
