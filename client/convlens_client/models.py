"""Typed results: what the service answers, as dataclasses."""

import base64
from dataclasses import dataclass, field
from typing import Any

FINISHED = frozenset({"succeeded", "failed", "cancelled", "aborted"})


@dataclass
class Artifact:
    """One picture (PNG) or array (.npy) of a result: embedded (``content``) or linked (``url``)."""

    name: str
    kind: str
    media_type: str
    url: str | None = None
    content: bytes | None = None
    width: int | None = None
    height: int | None = None
    shape: list[int] | None = None
    dtype: str | None = None
    main: bool = False
    bytes: int | None = None

    @classmethod
    def from_inline(cls, item: dict) -> "Artifact":
        data = item.get("data_base64")
        return cls(
            name=item["name"], kind=item["kind"], media_type=item["media_type"], url=item.get("url"),
            content=base64.b64decode(data) if data is not None else None,
            width=item.get("width"), height=item.get("height"), shape=item.get("shape"), dtype=item.get("dtype"),
        )

    @classmethod
    def from_job(cls, item: dict) -> "Artifact":
        return cls(name=item["name"], kind=item["kind"], media_type=item["media_type"], url=item["url"],
                   main=item.get("main", False), bytes=item.get("bytes"))


@dataclass
class InlineResult:
    method: str
    model: str
    main: str | None
    data: dict[str, Any]
    artifacts: dict[str, Artifact]

    picture: dict[str, Any] | None = None  # {position, id, name} when one of several pictures

    @classmethod
    def from_json(cls, body: dict) -> "InlineResult":
        artifacts = {item["name"]: Artifact.from_inline(item) for item in body["artifacts"]}
        return cls(body["method"], body["model"], body.get("main"), body["data"], artifacts, body.get("picture"))


@dataclass
class Progress:
    step: int
    total: int
    fraction: float | None = None
    eta_seconds: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    preview_url: str | None = None

    @classmethod
    def from_json(cls, body: dict | None) -> "Progress | None":
        if not body:
            return None
        return cls(body["step"], body["total"], body.get("fraction"), body.get("eta_seconds"), body.get("info") or {},
                   body.get("preview_url"))


@dataclass
class QueuePlace:
    """Where a queued job stands: jobs ahead of it (0: next) and about how long until it starts (None: unknown)."""

    position: int
    estimated_wait_seconds: float | None = None
    based_on: int = 0

    @classmethod
    def from_json(cls, body: dict | None) -> "QueuePlace | None":
        if not body:
            return None
        return cls(body["position"], body.get("estimated_wait_seconds"), body.get("based_on", 0))

    def __str__(self) -> str:
        wait = self.estimated_wait_seconds
        return f"queued, position {self.position}" + (f", about {wait:.0f} s" if wait is not None else "")


@dataclass
class Job:
    id: str
    state: str
    method: str
    model: str
    params: dict[str, Any]
    inputs: dict[str, Any]
    progress: Progress | None
    error: dict[str, Any] | None
    result: dict[str, Any] | None
    artifacts: list[Artifact]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    queue: QueuePlace | None = None  # while queued: its position and estimated wait

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def artifact(self, name: str | None = None) -> Artifact:
        """The artifact called ``name`` (``image.png``, or just ``image``), or the main picture."""
        for item in self.artifacts:
            if (name is None and item.main) or item.name in (name, f"{name}.png", f"{name}.npy"):
                return item
        raise KeyError(name or "main")

    @classmethod
    def from_json(cls, body: dict) -> "Job":
        return cls(
            body["id"], body["state"], body["method"], body["model"], body.get("params") or {}, body.get("inputs") or {},
            Progress.from_json(body.get("progress")), body.get("error"), body.get("result"),
            [Artifact.from_job(item) for item in body.get("artifacts", [])], body, QueuePlace.from_json(body.get("queue")),
        )


@dataclass
class StoredImage:
    id: str
    url: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
