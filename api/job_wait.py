"""``Prefer: wait=N`` (RFC 7240): hold a job submission until the job finishes, up to N seconds.

The wait subscribes to the job's event channel first and then reads the
record, so a change between the two is not missed; it runs on the event loop
with redis' asyncio client, so a waiting request holds no thread.
"""

import asyncio
import re
import time

from redis import asyncio as aioredis

from worker.jobs import Job
from api.job_service import JobService
from worker.broker import BROKER_ERRORS, BrokerUnavailable

_WAIT = re.compile(r"(?:^|[;,\s])wait\s*=\s*\"?(\d+(?:\.\d+)?)\"?", re.IGNORECASE)


def preferred_wait(prefer: str | None, longest: float) -> float | None:
    """The seconds asked for by a ``Prefer`` header (capped at ``longest``), None when it asks for none."""
    match = _WAIT.search(prefer or "")
    if match is None:
        return None
    return min(float(match.group(1)), longest)


async def wait_finished(service: JobService, job: Job, seconds: float) -> Job:
    """The job once finished, or as it stands after ``seconds``."""
    if job.finished or seconds <= 0:
        return job
    settings = service.settings
    client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=settings.redis_connect_timeout)
    pubsub = client.pubsub()
    deadline = time.monotonic() + seconds
    try:
        await pubsub.subscribe(service.jobs.channel(job.id))
        while True:
            raw = await client.hgetall(service.jobs.key(job.id))
            if not raw:
                return job
            job = Job.from_fields(raw)
            left = deadline - time.monotonic()
            if job.finished or left <= 0:
                return job
            await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(f"the job queue is unreachable: {exc}") from exc
    finally:
        await asyncio.shield(close_subscription(pubsub, client))


async def close_subscription(pubsub, client) -> None:
    await pubsub.aclose()
    await client.aclose()
