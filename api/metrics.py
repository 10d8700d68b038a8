"""Prometheus metrics (``GET /metrics``): the API's own, plus what workers publish into Redis.

Each app has its own registry. Request latency is observed by
:class:`api.observability.Observe` (by route template, never the raw path, so
ids do not explode the label set); inline latency by the inline routes. At
scrape time a collector reads the queue depth (the broker's lists), job
counts and durations and the workers' memory (:mod:`worker.metrics`) from Redis;
with Redis down it reports ``convlens_broker_up 0`` and nothing else of those.
"""

import math
from typing import Callable

import redis
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from worker.jobs import REDIS_ERRORS
from worker.metrics import DURATION_BUCKETS, bucket_label, job_counts, job_durations, worker_memory
from worker.queue_app import QUEUES

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, math.inf)
_PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport keeps priorities 3, 6, 9 in lists "<queue>\x06\x16<n>"


class Metrics:
    def __init__(self, redis_client: Callable[[], redis.Redis], worker_max_age_seconds: float):
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "convlens_http_request_duration_seconds", "HTTP request latency by route template and status",
            ("method", "route", "status"), buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.inline = Histogram(
            "convlens_inline_duration_seconds", "inline method calls, from the request to the encoded answer",
            ("method",), buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.inline_batch = Histogram(
            "convlens_inline_batch_size", "calls answered by one pass through the network (dynamic batching of inline calls)",
            ("method",), buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64), registry=self.registry,
        )
        self.registry.register(_BrokerCollector(redis_client, worker_max_age_seconds))


class _BrokerCollector:
    def __init__(self, redis_client: Callable[[], redis.Redis], worker_max_age_seconds: float):
        self.redis_client, self.max_age = redis_client, worker_max_age_seconds

    def collect(self):
        up = GaugeMetricFamily("convlens_broker_up", "1 when Redis (broker and job records) answered this scrape")
        try:
            families = self._read(self.redis_client())
        except REDIS_ERRORS:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, client: redis.Redis) -> list:
        depth = GaugeMetricFamily("convlens_queue_depth", "jobs waiting in each broker queue", labels=["queue"])
        pipe = client.pipeline()
        for queue in QUEUES:
            for key in (queue, *(f"{queue}{_PRIORITY_SEP}{p}" for p in (3, 6, 9))):
                pipe.llen(key)
        lengths = pipe.execute()
        for i, queue in enumerate(QUEUES):
            depth.add_metric([queue], sum(lengths[4 * i: 4 * i + 4]))

        jobs = CounterMetricFamily("convlens_jobs", "jobs that ended, by method and final state", labels=["method", "state"])
        for (method, state), count in sorted(job_counts(client).items()):
            jobs.add_metric([method, state], count)

        durations = HistogramMetricFamily("convlens_job_duration_seconds", "running time of finished jobs", labels=["method"])
        for method, values in sorted(job_durations(client).items()):
            buckets = [(bucket_label(le), values.get(bucket_label(le), 0.0)) for le in DURATION_BUCKETS]
            durations.add_metric([method], buckets, values.get("sum", 0.0))

        memory = GaugeMetricFamily("convlens_worker_resident_memory_bytes", "resident memory of each worker process",
                                   labels=["worker"])
        for worker, rss in sorted(worker_memory(client, self.max_age).items()):
            memory.add_metric([worker], rss)
        return [depth, jobs, durations, memory]
