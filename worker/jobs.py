"""Job records: ours, one Redis hash per job, written before the task is sent.

Celery's result backend reports any unknown id as PENDING, so existence,
state, progress and artifacts live here instead. Every state change is one
Lua script (atomic with the checks it depends on) that also publishes an
event on the job's channel for the SSE stream.

States: queued -> running -> succeeded | failed | cancelled; queued -> cancelled;
queued -> aborted (its deadline to start passed before a worker reached it);
running -> queued again when the reaper finds its worker gone.

Nothing gets stuck: every unfinished job is in the ``active`` set; a running
job's worker keeps a heartbeat key alive; the reaper (:meth:`JobStore.reap`)
puts a running job whose heartbeat has expired back in the queue (where a
delivery past ``max_deliveries`` fails it as a poison pill), and sends again a queued job whose message was
never sent or has waited suspiciously long (a duplicate message is harmless:
a delivery of a job that is finished, or running with a live heartbeat, does
nothing). A submission's dedup key lives only briefly until its message is
sent, so a failed send never blocks identical submissions for long; identical
submissions arriving while the first is being sent share its job.

Queue honesty: finishing a job ``succeeded`` also records its run time in a
short per-method list (the last ``RECENT_DURATIONS``); :meth:`JobStore.queue_info`
counts the unfinished jobs of the same queue created before a queued one (from
``active``) and estimates its wait from those lists (:mod:`worker.queue_estimate`).
"""

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from worker.queue_estimate import Ahead, queue_estimate

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "aborted")
FINISHED = frozenset({"succeeded", "failed", "cancelled", "aborted"})
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_JSON_FIELDS = ("params", "inputs", "progress", "error", "artifacts", "result", "webhook", "input_names")
_TIME_FIELDS = ("created_at", "started_at", "finished_at", "cancel_requested_at", "sent_at", "deadline_at")

_LATE = json.dumps({"code": "deadline_passed", "message": "the job had not started by its deadline"})

SEND_GRACE_SECONDS = 2.0  # how long a submission may take to send its job's message before twins pass it over

_CREATE = """
local existing = redis.call('GET', KEYS[3])
if existing then
  local state = redis.call('HGET', ARGV[3] .. existing, 'state')
  local sent = redis.call('HEXISTS', ARGV[3] .. existing, 'sent_at') == 1
  local reusable = state and state ~= 'failed' and state ~= 'cancelled' and state ~= 'aborted'
  local sending = tonumber(ARGV[5]) - tonumber(redis.call('HGET', ARGV[3] .. existing, 'created_at') or 0) < tonumber(ARGV[7])
  if reusable and (sent or sending or state ~= 'queued') then return existing end
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  local state = redis.call('HGET', ARGV[3] .. id, 'state')
  if state ~= 'queued' and state ~= 'running' then redis.call('SREM', KEYS[5], id) end
end
local limit = tonumber(ARGV[6])
if limit > 0 and redis.call('SCARD', KEYS[5]) >= limit then return false end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('EXPIRE', KEYS[5], ARGV[2])
return ARGV[1]
"""

_SENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'sent_at', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
return 1
"""

_START = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing', 0} end
if state ~= 'queued' and state ~= 'running' then return {'finished', 0} end
if state == 'running' then
  local owner = redis.call('HGET', KEYS[1], 'worker')
  if owner and owner ~= ARGV[3] and redis.call('EXISTS', ARGV[6] .. owner) == 1 then return {'duplicate', 0} end
end
local deadline = redis.call('HGET', KEYS[1], 'deadline_at')
local never_started = redis.call('HEXISTS', KEYS[1], 'started_at') == 0
if state == 'queued' and never_started and deadline and tonumber(ARGV[1]) > tonumber(deadline) then
  redis.call('HSET', KEYS[1], 'state', 'aborted', 'finished_at', ARGV[1], 'error', ARGV[8])
  redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
  redis.call('PUBLISH', ARGV[4], 'state')
  return {'aborted', 0}
end
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1])
  redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
  redis.call('PUBLISH', ARGV[4], 'state')
  return {'cancelled', 0}
end
local n = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
if n > tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', ARGV[1], 'error', ARGV[5])
  redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
  redis.call('PUBLISH', ARGV[4], 'state')
  return {'poisoned', n}
end
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[1], 'worker', ARGV[3])
redis.call('SET', ARGV[6] .. ARGV[3], ARGV[1], 'PX', ARGV[7])
redis.call('PUBLISH', ARGV[4], 'state')
return {'run', n}
"""

_FAIL_UNSENT = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' or redis.call('HEXISTS', KEYS[1], 'sent_at') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', ARGV[1], 'error', ARGV[3])
redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
redis.call('PUBLISH', ARGV[2], 'state')
return 1
"""

_ABORT_LATE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' or redis.call('HEXISTS', KEYS[1], 'started_at') == 1 then return 0 end
local deadline = redis.call('HGET', KEYS[1], 'deadline_at')
if not deadline or tonumber(ARGV[1]) <= tonumber(deadline) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'aborted', 'finished_at', ARGV[1], 'error', ARGV[3])
redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
redis.call('PUBLISH', ARGV[2], 'state')
return 1
"""

_REAP_RUNNING = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 'skip' end
local owner = redis.call('HGET', KEYS[1], 'worker')
if owner and redis.call('EXISTS', ARGV[3] .. owner) == 1 then return 'alive' end
redis.call('HSET', KEYS[1], 'state', 'queued', 'sent_at', ARGV[1])
redis.call('HDEL', KEYS[1], 'worker')
redis.call('PUBLISH', ARGV[2], 'state')
return 'requeue'
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

RECENT_DURATIONS = 20  # how many succeeded runs of a method its queue estimate draws on

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
redis.call('ZREM', KEYS[3], redis.call('HGET', KEYS[1], 'id'))
local started = tonumber(redis.call('HGET', KEYS[1], 'started_at') or '')
if fields[2] == 'succeeded' and started then
  redis.call('LPUSH', KEYS[4], tostring(tonumber(ARGV[4]) - started))
  redis.call('LTRIM', KEYS[4], 0, RECENT - 1)
end
redis.call('PUBLISH', ARGV[2], 'state')
return fields[2]
""".replace("RECENT", str(RECENT_DURATIONS))

_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or redis.call('HGET', KEYS[1], 'tenant') ~= ARGV[4] then return 'missing' end
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1], 'cancel_requested', '1', 'cancel_requested_at', ARGV[1])
  redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
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
  redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
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
    sent_at: float | None = None
    tenant: str = "public"
    request_id: str | None = None
    deadline_at: float | None = None  # a job not started by then ends aborted
    webhook: dict[str, Any] | None = None  # {"url", "events"}: see worker.webhooks
    max_stored_bytes: int | None = None  # the submitting key's stored-bytes limit (0: unlimited) for what the job keeps
    input_names: dict[str, list[str]] | None = None  # a collection's names for its pictures, by slot

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
            elif name in ("deliveries", "max_stored_bytes"):
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


class JobQuotaExceeded(Exception):
    """The tenant already has as many queued and running jobs as its key allows."""

    def __init__(self, limit: int):
        super().__init__(f"at most {limit} jobs may be queued or running at once; wait for one to finish")
        self.limit = limit


class JobStore:
    """Job records in Redis; every method is one round trip (the reaper: one per unfinished job).

    Every job belongs to a tenant. The API-side calls (``create``, ``get_owned``,
    ``list``, ``cancel``) take the tenant, and another tenant's job is simply
    not found; the worker runs whatever id it is handed (``get``, ``start``...).
    """

    def __init__(self, client: redis.Redis, ttl_seconds: int, prefix: str = "convlens", heartbeat_seconds: float = 5.0,
                 unsent_seconds: float = 30.0):
        self.redis, self.ttl, self.prefix = client, ttl_seconds, prefix
        # a dedup key lives this long until the job's message is known sent; an unsent job fails after it
        self.unsent_seconds = unsent_seconds
        # an unsent twin younger than this is being sent right now: identical submissions share it rather than
        # making a second job; an older one may be an orphan (its send and its removal failed) and is passed over
        self.send_grace = min(SEND_GRACE_SECONDS, unsent_seconds / 2)
        self.active = f"{prefix}:active"  # unfinished jobs of every tenant, scored by creation time
        self.heartbeat_ms = max(1, int(3 * heartbeat_seconds * 1000))  # a heartbeat missed three times: worker gone
        self._create = client.register_script(_CREATE)
        self._sent = client.register_script(_SENT)
        self._reap_running = client.register_script(_REAP_RUNNING)
        self._fail_unsent = client.register_script(_FAIL_UNSENT)
        self._abort_late = client.register_script(_ABORT_LATE)
        self._start = client.register_script(_START)
        self._progress = client.register_script(_PROGRESS)
        self._finish = client.register_script(_FINISH)
        self._cancel = client.register_script(_CANCEL)

    def key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def channel(self, job_id: str) -> str:
        return f"{self.prefix}:events:{job_id}"

    def index(self, tenant: str) -> str:
        return f"{self.prefix}:jobs:{tenant}"

    def _tenant_active_key(self, tenant: str) -> str:
        return f"{self.prefix}:active:{tenant}"

    def _dedup_key(self, job: Job) -> str:
        return f"{self.prefix}:dedup:{job.tenant}:{job.content_hash}"

    def _durations_key(self, method: str) -> str:
        return f"{self.prefix}:durations:{method}"

    def _heartbeat_prefix(self) -> str:
        return f"{self.prefix}:heartbeat:"

    def ping(self) -> None:
        self.redis.ping()

    def create(self, job: Job, max_active: int = 0) -> tuple[Job, bool]:
        """Store a new queued job, unless an identical one of the same tenant exists that did not fail, get cancelled or
        abort, and is sent, running, finished or younger than ``send_grace`` (its submission still sending it).

        Returns the job that stands for the request and whether it is the new one.
        With ``max_active`` > 0, raises JobQuotaExceeded when the tenant already
        has that many jobs queued or running (checked in the same script).
        """
        keys = [self.key(job.id), self.index(job.tenant), self._dedup_key(job), self.active, self._tenant_active_key(job.tenant)]
        args = [job.id, self.ttl, f"{self.prefix}:job:", max(1, round(self.unsent_seconds)), repr(job.created_at), max_active,
                repr(self.send_grace), *_flat(job.to_fields())]
        winner = self._create(keys=keys, args=args)
        if winner is None:
            raise JobQuotaExceeded(max_active)
        if _text(winner) == job.id:
            return job, True
        existing = self.get_owned(_text(winner), job.tenant)
        return (existing, False) if existing is not None else self.create(job, max_active)

    def mark_sent(self, job: Job) -> None:
        """The job's message is in the queue: its dedup key now lives as long as the record."""
        self._sent(keys=[self.key(job.id), self._dedup_key(job)], args=[self.ttl, repr(time.time()), job.id])

    def get(self, job_id: str) -> Job | None:
        """Any tenant's job (the worker's lookup); the API uses ``get_owned``."""
        raw = self.redis.hgetall(self.key(job_id))
        return Job.from_fields(raw) if raw else None

    def get_owned(self, job_id: str, tenant: str) -> Job | None:
        """The job when it belongs to ``tenant``, else None: a foreign id is not found."""
        job = self.get(job_id)
        return job if job is not None and job.tenant == tenant else None

    def remove(self, job_id: str) -> None:
        """Forget a job that could not be queued (its task was never sent)."""
        job = self.get(job_id)
        if job is None:
            return
        pipe = self.redis.pipeline()
        pipe.delete(self.key(job_id))
        pipe.zrem(self.index(job.tenant), job_id)
        pipe.zrem(self.active, job_id)
        pipe.srem(self._tenant_active_key(job.tenant), job_id)
        pipe.delete(self._dedup_key(job))
        pipe.execute()

    def list(self, tenant: str, state: str | None = None, limit: int = 20, cursor: str | None = None) -> tuple[list[Job], str | None]:
        """The tenant's jobs newest first, optionally of one state; ``cursor`` is the last id of the previous page."""
        index = self.index(tenant)
        found: list[Job] = []
        upper = f"({cursor}" if cursor else "+"
        while len(found) < limit:
            ids = [_text(i) for i in self.redis.zrevrangebylex(index, upper, "-", start=0, num=max(limit, 50))]
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
                self.redis.zrem(index, *expired)
            upper = f"({ids[-1]}"
        return found, None

    def queue_info(self, job: Job) -> dict | None:
        """A queued job's place: ``{"position", "estimated_wait_seconds", "based_on"}`` (see
        :mod:`worker.queue_estimate`); None once it is not queued. Reads every unfinished job created before it
        (one pipelined round trip) and the recent run times of their methods (another)."""
        if job.state != "queued":
            return None
        earlier = self.redis.zrangebyscore(self.active, "-inf", repr(job.created_at), withscores=True)
        ids = [_text(i) for i, score in earlier if _text(i) != job.id and (score < job.created_at or _text(i) < job.id)]
        pipe = self.redis.pipeline()
        for job_id in ids:
            pipe.hmget(self.key(job_id), "state", "queue", "method", "started_at", "progress")
        ahead = []
        for state, queue, method, started_at, progress in pipe.execute():
            if state is None or _text(state) not in ("queued", "running") or _text(queue or b"") != job.queue:
                continue
            running = _text(state) == "running"
            report = json.loads(progress) if running and progress else {}
            started = float(started_at) if started_at else None
            reported = started + report["elapsed_seconds"] if started is not None and report.get("elapsed_seconds") is not None else None
            ahead.append(Ahead(_text(method), running, started, report.get("eta_seconds"), reported))
        methods = sorted({item.method for item in ahead})
        pipe = self.redis.pipeline()
        for method in methods:
            pipe.lrange(self._durations_key(method), 0, -1)
        durations = {method: [float(v) for v in seen] for method, seen in zip(methods, pipe.execute())}
        return queue_estimate(ahead, durations, time.time())

    # -- worker side -------------------------------------------------------

    def start(self, job_id: str, max_deliveries: int, worker: str) -> tuple[str, int]:
        """Claim a delivery: ("run", n) to run it, else why not (missing, finished, duplicate, cancelled, aborted, poisoned)."""
        poison = json.dumps({
            "code": "poison_pill",
            "message": f"the job was delivered more than {max_deliveries} times; every attempt ended its worker",
        })
        action, deliveries = self._start(
            keys=[self.key(job_id), self.active],
            args=[repr(time.time()), max_deliveries, worker, self.channel(job_id), poison, self._heartbeat_prefix(),
                  self.heartbeat_ms, _LATE],
        )
        return _text(action), int(deliveries)

    def unfinished_inputs(self) -> set[str]:
        """``<tenant>/<image id>`` of every image an unfinished job reads."""
        ids: set[str] = set()
        for job_id in self.redis.zrange(self.active, 0, -1):
            job = self.get(_text(job_id))
            if job is not None and not job.finished:
                ids.update(f"{job.tenant}/{image_id}" for image_id in job.input_ids())
        return ids

    def heartbeat(self, worker: str) -> None:
        """``worker`` is alive and running a job (the key outlives three missed beats)."""
        self.redis.set(self._heartbeat_prefix() + worker, repr(time.time()), px=self.heartbeat_ms)

    def stop_heartbeat(self, worker: str) -> None:
        self.redis.delete(self._heartbeat_prefix() + worker)

    def reap(self, resend_after_seconds: float) -> "dict[str, list[str]]":
        """Find unfinished jobs nobody will finish; returns ``{"requeue": [...], "failed": [...], "aborted": [...]}``.

        A running job whose worker's heartbeat has expired goes back to
        ``queued`` (its id is returned to be sent again); once its deliveries
        are spent, that delivery fails it as a poison pill. A queued job never
        marked sent (its submission failed, or its submitter died, between
        record and send) fails with ``not_sent``; one sent longer than
        ``resend_after_seconds`` ago (a broker restart may have lost its
        message) is returned to be sent again; one whose deadline to start
        has passed ends ``aborted`` now, not only when a worker reaches it.
        """
        now = time.time()
        unsent = json.dumps({"code": "not_sent", "message": "the job's submission failed before it reached the queue; submit it again"})
        found: "dict[str, list[str]]" = {"requeue": [], "failed": [], "aborted": []}
        for job_id in (_text(i) for i in self.redis.zrange(self.active, 0, -1)):
            job = self.get(job_id)
            if job is None or job.finished:
                self.redis.zrem(self.active, job_id)
                continue
            if job.state == "running":
                outcome = _text(self._reap_running(
                    keys=[self.key(job_id), self.active],
                    args=[repr(now), self.channel(job_id), self._heartbeat_prefix()],
                ))
                if outcome in found:
                    found[outcome].append(job_id)
            elif job.state == "queued":
                if job.deadline_at is not None and now > job.deadline_at and job.started_at is None:
                    if self._abort_late(keys=[self.key(job_id), self.active], args=[repr(now), self.channel(job_id), _LATE]):
                        found["aborted"].append(job_id)
                elif job.sent_at is None and now - job.created_at > self.unsent_seconds:
                    if self._fail_unsent(keys=[self.key(job_id), self.active], args=[repr(now), self.channel(job_id), unsent]):
                        found["failed"].append(job_id)
                elif job.sent_at is not None and now - job.sent_at > resend_after_seconds:
                    found["requeue"].append(job_id)
        return found

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
        keys = [self.key(job.id), self._dedup_key(job), self.active, self._durations_key(job.method)]
        ended = self._finish(keys=keys, args=[self.ttl, self.channel(job.id), state, repr(time.time()), *flat])
        return _text(ended) if ended else None

    def fail(self, job: Job, code: str, message: str) -> str | None:
        return self.finish(job, "failed", error={"code": code, "message": message})

    # -- API side ------------------------------------------------------------

    def cancel(self, job_id: str, tenant: str, grace_seconds: float = -1) -> str:
        """Cancel a job, or ask it to stop; returns what happened.

        - ``cancelled``: it was queued, and now never runs;
        - ``requested``: it is running and is asked to stop at its next
          progress report (the first request starts the grace period);
        - ``terminate``: it was asked at least ``grace_seconds`` ago (negative:
          never) and still runs; it is now recorded cancelled, and the caller
          must end its process;
        - ``finished``, or ``missing`` (also for another tenant's job).
        """
        args = [repr(time.time()), self.channel(job_id), grace_seconds, tenant]
        return _text(self._cancel(keys=[self.key(job_id), self.active], args=args))


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
