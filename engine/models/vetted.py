"""What vetting proved about a model file (:func:`engine.models.vetting.vet`), as plain records.

Kept apart from the vetting itself so that the processes that only read these
records (the API, workers) need not import the checks and the converter.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from engine.models.formats import ModelFormat

Size = tuple[int, int]  # (height, width)


@dataclass(frozen=True)
class Sizes:
    """The input sizes a model was measured to run at: its native one, and the smallest and largest probed."""

    native: Size
    min: Size
    max: Size

    @property
    def fixed(self) -> bool:
        return self.min == self.native == self.max

    def as_dict(self) -> dict:
        return {"native": list(self.native), "min": list(self.min), "max": list(self.max), "fixed": self.fixed}


@dataclass(frozen=True)
class CatalogueEntry:
    """One layer whose output is a feature map or vector, at the native input size."""

    name: str
    type: str
    shape: tuple[int, ...]  # (channels, height, width) or (features,), batch left out
    leaf: bool  # a module without submodules
    weight_shape: tuple[int, ...] | None  # Conv2d only: (out, in / groups, kh, kw)

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "shape": list(self.shape), "leaf": self.leaf,
                "weight_shape": list(self.weight_shape) if self.weight_shape is not None else None}


@dataclass(frozen=True)
class Vetted:
    """What vetting proved about a model file; all of it but the ONNX bytes goes into the model's record."""

    format: ModelFormat  # the file's own format
    onnx: bytes = field(repr=False)  # what the API and workers store and load: the file, or its translation
    metadata: dict  # ModelMetadata (JSON) with every default layer resolved
    parameters: int
    sizes: Sizes
    capabilities: Mapping[str, str | None]  # layers, relu_rules, incremental_occlusion, resizable: None when it works, else why not
    catalogue: tuple[CatalogueEntry, ...]

    def as_record(self) -> dict:
        return {
            "format": self.format, "metadata": self.metadata, "parameters": self.parameters, "sizes": self.sizes.as_dict(),
            "capabilities": dict(self.capabilities), "catalogue": [entry.as_dict() for entry in self.catalogue],
        }

    @classmethod
    def from_record(cls, record: dict, onnx: bytes) -> "Vetted":
        sizes = record["sizes"]
        return cls(
            format=record["format"], onnx=onnx, metadata=record["metadata"], parameters=record["parameters"],
            sizes=Sizes(tuple(sizes["native"]), tuple(sizes["min"]), tuple(sizes["max"])),
            capabilities=MappingProxyType(dict(record["capabilities"])),
            catalogue=tuple(
                CatalogueEntry(e["name"], e["type"], tuple(e["shape"]), e["leaf"], tuple(e["weight_shape"]) if e["weight_shape"] is not None else None)
                for e in record["catalogue"]
            ),
        )
