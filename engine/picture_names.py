"""A picture's id and name travel with it, in PIL's per-image ``info``, so that an answer
about a collection names its pictures (position, id and name), not only their positions.

The service names each decoded picture (an upload's id, a collection's file name, a
multipart file's name); a picture from elsewhere has neither, and keeps its position.
"""

from PIL import Image

_ID, _NAME = "convlens_id", "convlens_name"


def named(image: Image.Image, image_id: str | None = None, name: str | None = None) -> Image.Image:
    """``image`` carrying its id and name (either may be None)."""
    image.info[_ID], image.info[_NAME] = image_id, name
    return image


def picture_ref(images: list[Image.Image], position: int) -> dict:
    """How an answer refers to picture ``position`` of a slot: ``{"position", "id", "name"}``."""
    info = images[position].info
    return {"position": position, "id": info.get(_ID), "name": info.get(_NAME)}


def caption(images: list[Image.Image], position: int) -> str:
    """A short caption: the picture's name, else ``#position``."""
    return images[position].info.get(_NAME) or f"#{position}"
