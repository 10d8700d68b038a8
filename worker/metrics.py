"""Job metrics the workers publish into Redis, for the API's ``/metrics`` to export.

Worker processes come and go (prefork children, several machines), so they
keep no metrics of their own to be scraped: each finished job adds to
counters in Redis (jobs by method and final state, a cumulative duration
histogram per method), and each worker process writes its resident memory
there when a job starts and ends. The API reads these at scrape time.
"""

import json
import math
import os
import resource
import time

import redis

DURATION_BUCKETS = (0.5, 1, 5, 15, 60, 300, 900, 3600, math.inf)


def _keys(prefix: str) -> tuple[str, str, str]:
    return f"{prefix}:metrics:jobs", f"{prefix}:metrics:job_seconds", f"{prefix}:metrics:workers"


def bucket_label(le: float) -> str:
    return "+Inf" if le == math.inf else repr(float(le))


def record_job(client: redis.Redis, method: str, state: str, seconds: float | None, prefix: str = "convlens") -> None:
    """Count a job that ended in ``state``; add its running time (None when it never ran) to the histogram."""
    jobs, durations, _ = _keys(prefix)
    pipe = client.pipeline(transaction=True)
    pipe.hincrby(jobs, f"{method}|{state}", 1)
    if seconds is not None:
        for le in DURATION_BUCKETS:
            if seconds <= le:
                pipe.hincrby(durations, f"{method}|{bucket_label(le)}", 1)
        pipe.hincrbyfloat(durations, f"{method}|sum", seconds)
        pipe.hincrby(durations, f"{method}|count", 1)
    pipe.execute()


def resident_bytes() -> int:
    """This process's resident memory (Linux /proc; elsewhere its peak)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def record_worker_memory(client: redis.Redis, worker: str, prefix: str = "convlens") -> None:
    client.hset(_keys(prefix)[2], worker, json.dumps({"rss": resident_bytes(), "at": time.time()}))


def job_counts(client: redis.Redis, prefix: str = "convlens") -> dict[tuple[str, str], int]:
    return {tuple(k.decode().split("|", 1)): int(v) for k, v in client.hgetall(_keys(prefix)[0]).items()}


def job_durations(client: redis.Redis, prefix: str = "convlens") -> dict[str, dict[str, float]]:
    """method -> {"+Inf"/"<le>": cumulative count, "sum": seconds, "count": jobs}."""
    found: dict[str, dict[str, float]] = {}
    for field, value in client.hgetall(_keys(prefix)[1]).items():
        method, name = field.decode().rsplit("|", 1)
        found.setdefault(method, {})[name] = float(value)
    return found


def worker_memory(client: redis.Redis, max_age_seconds: float, prefix: str = "convlens") -> dict[str, int]:
    """Resident bytes of each worker process heard from within ``max_age_seconds``; older entries are dropped."""
    key, now, fresh, stale = _keys(prefix)[2], time.time(), {}, []
    for worker, raw in client.hgetall(key).items():
        entry = json.loads(raw)
        if now - entry["at"] <= max_age_seconds:
            fresh[worker.decode()] = int(entry["rss"])
        else:
            stale.append(worker)
    if stale:
        client.hdel(key, *stale)
    return fresh
