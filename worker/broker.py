"""What "the broker is down" means to every caller: Redis or kombu connection errors, as one exception."""

from contextlib import contextmanager

from kombu.exceptions import OperationalError

from worker.jobs import REDIS_ERRORS

BROKER_ERRORS = (*REDIS_ERRORS, OperationalError)


class BrokerUnavailable(Exception):
    """Redis (broker and job records) cannot be reached."""


@contextmanager
def broker_errors():
    """Turn Redis/kombu connection errors into BrokerUnavailable."""
    try:
        yield
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(f"the job queue is unreachable: {exc}") from exc
