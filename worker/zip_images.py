"""The files of an uploaded zip, read safely into memory (nothing is written to disk).

- names that could climb out of a directory (``../``, absolute paths, drive
  letters, backslashes) are refused, even though nothing is extracted to a path;
- so is a file name (without its path) over 255 characters, what file systems take:
  a zip name field holds up to 64 KB, and the names are stored in the collection
  and echoed back (errors show a name shortened);
- the entry count is checked before anything is read;
- a zip bomb is refused twice: by the declared sizes before reading, and by
  the actual bytes while reading (each entry is read with a cap, so a header
  that lies about its size cannot make us inflate more than the limit);
- directory entries and macOS resource forks (``__MACOSX/``) are skipped.
"""

import io
import lzma
import zipfile
import zlib
from dataclasses import dataclass


# what reading a damaged entry raises: zipfile's own errors, and its decompressors' (a damaged deflate
# stream is zlib.error, an LZMA one lzma.LZMAError; bz2 raises OSError), none of them zipfile.BadZipFile
_UNREADABLE_ENTRY = (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, OSError, EOFError, zlib.error, lzma.LZMAError)


MAX_NAME = 255  # characters of an entry's file name without its path (most file systems' limit)
SHOWN = 80  # characters of an entry's name an error shows


def shown(name: str) -> str:
    """``name`` as an error shows it: a long one cut to its first :data:`SHOWN` characters and an ellipsis."""
    return name if len(name) <= SHOWN else name[:SHOWN] + "…"


class ZipRejected(Exception):
    """A zip that is unreadable or unsafe; ``status`` and ``code`` say how to answer."""

    def __init__(self, status: int, code: str, message: str, entry: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.entry = status, code, message, entry


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int
    max_bytes: int  # the most bytes all entries may inflate to, together


def is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _unsafe(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or "\\" in name or ".." in parts or (len(name) > 1 and name[1] == ":")


def read_zip(data: bytes, limits: ZipLimits) -> list[tuple[str, bytes]]:
    """(entry name, bytes) of every file in the zip, in archive order."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise ZipRejected(400, "bad_zip", f"the upload is not a readable zip archive ({exc})") from None
    with archive:
        entries = [info for info in archive.infolist() if not info.is_dir() and not info.filename.startswith("__MACOSX/")]
        for info in entries:
            name = shown(info.filename)
            if _unsafe(info.filename):
                raise ZipRejected(400, "unsafe_zip_entry", f"zip entry {name!r} has an unsafe path (absolute or '..')", name)
            file_name = info.filename.rsplit("/", 1)[-1]
            if len(file_name) > MAX_NAME:
                raise ZipRejected(400, "unsafe_zip_entry", f"zip entry {name!r} has a file name of {len(file_name)} characters; "
                                  f"at most {MAX_NAME}", name)
        if len(entries) > limits.max_entries:
            raise ZipRejected(413, "too_many_images", f"the zip holds {len(entries)} files; a collection takes at most {limits.max_entries}")
        declared = sum(info.file_size for info in entries)
        if declared > limits.max_bytes:
            raise ZipRejected(413, "zip_too_large", f"the zip inflates to {declared} bytes; the limit is {limits.max_bytes}")
        files, left = [], limits.max_bytes
        for info in entries:
            try:
                with archive.open(info) as member:
                    content = member.read(min(left, info.file_size) + 1)
            except _UNREADABLE_ENTRY as exc:
                raise ZipRejected(400, "bad_zip", f"zip entry {shown(info.filename)!r} cannot be read ({exc})", shown(info.filename)) from None
            if len(content) > info.file_size or len(content) > left:
                raise ZipRejected(413, "zip_too_large", f"zip entry {shown(info.filename)!r} inflates past its declared size or the limit",
                                  shown(info.filename))
            left -= len(content)
            files.append((info.filename, content))
        return files
