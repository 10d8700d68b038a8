"""Structured logs: one JSON object per line, with the request id that follows a request into its job.

Shared by the API (``convlens.*`` loggers) and the worker (Celery's loggers,
through its ``after_setup_*logger`` signals), so both write the same fields.
"""

import json
import logging
import sys
import time

CONTEXT = ("request_id", "job_id", "tenant", "key_id", "method", "route", "path", "status", "duration_ms")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({name: getattr(record, name) for name in CONTEXT if getattr(record, name, None) is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def use_json(logger: logging.Logger) -> None:
    """Format every handler of ``logger`` as JSON lines."""
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged (it may be replaced after import)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def json_logger(name: str) -> logging.Logger:
    """``name``'s logger writing JSON lines to stderr (one handler, however often called)."""
    logger = logging.getLogger(name)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger
