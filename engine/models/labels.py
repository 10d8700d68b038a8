"""ImageNet-1k class names, as shipped with torchvision (no download)."""

from torchvision.models._meta import _IMAGENET_CATEGORIES

IMAGENET_LABELS: tuple[str, ...] = tuple(_IMAGENET_CATEGORIES)
