"""What vetting proved about a model file (:func:`engine.models.vetting.vet`), as plain records.

Kept apart from the vetting itself so that the processes that only read these
records (the API, workers) need not import the checks and the converter.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from engine.models.formats import ModelFormat
from engine.models.wrapper import LayerInfo
from engine.models.zoo import Sizes


@dataclass(frozen=True)
class Vetted:
    """What vetting proved about a model file; all of it but the ONNX bytes goes into the model's record."""

    format: ModelFormat  # the file's own format
    onnx: bytes = field(repr=False)  # what the API and workers store and load: the file, or its translation
    metadata: dict  # ModelMetadata (JSON) with every default layer resolved
    parameters: int
    sizes: Sizes
    capabilities: Mapping[str, str | None]  # layers, relu_rules, incremental_occlusion, resizable: None when it works, else why not
    catalogue: tuple[LayerInfo, ...]

    def as_record(self) -> dict:
        return {
            "format": self.format, "metadata": self.metadata, "parameters": self.parameters, "sizes": self.sizes.as_dict(),
            "capabilities": dict(self.capabilities), "catalogue": [entry.as_dict() for entry in self.catalogue],
        }

    @classmethod
    def from_record(cls, record: dict, onnx: bytes) -> "Vetted":
        return cls(
            format=record["format"], onnx=onnx, metadata=record["metadata"], parameters=record["parameters"],
            sizes=Sizes.from_dict(record["sizes"]),
            capabilities=MappingProxyType(dict(record["capabilities"])),
            catalogue=tuple(LayerInfo.from_dict(entry) for entry in record["catalogue"]),
        )
