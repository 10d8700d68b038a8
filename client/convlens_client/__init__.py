"""ConvLens client: ``from convlens_client import ConvLens``."""

from convlens_client.client import AsyncConvLens, ConvLens
from convlens_client.errors import ConvLensError
from convlens_client.models import Artifact, InlineResult, Job, Progress, QueuePlace, StoredImage

__all__ = ["AsyncConvLens", "ConvLens", "ConvLensError", "Artifact", "InlineResult", "Job", "Progress", "QueuePlace", "StoredImage"]
