"""Reading a multipart form within its limits, the one way every route reads one.

Starlette refuses a form past its file, field or part-size limit with a bare
400 whose text only it knows; here each limit has its own problem code and a
message naming the limit (413 ``too_many_files``, ``too_many_fields``,
``part_too_large``), and any other unreadable body is 400 ``malformed_multipart``.
"""

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

from api.problems import Problem


async def read_form(request: Request, max_files: int, max_fields: int, max_part_size: int | None = None,
                    too_many_files: str = "too_many_files") -> FormData:
    """The request's multipart form; a :class:`Problem` naming the limit it passes (``too_many_files``: that one's code)."""
    limits = {} if max_part_size is None else {"max_part_size": max_part_size}
    try:
        return await request.form(max_files=max_files, max_fields=max_fields, **limits)
    except HTTPException as exc:
        raise form_problem(str(exc.detail), max_files, max_fields, max_part_size, too_many_files) from None


def form_problem(message: str, max_files: int, max_fields: int, max_part_size: int | None, too_many_files: str) -> Problem:
    """The problem for Starlette's multipart ``message``."""
    if message.startswith("Too many files"):
        return Problem(413, too_many_files, f"a request here takes at most {_count(max_files, 'file')}; send fewer")
    if message.startswith("Too many fields"):
        return Problem(413, "too_many_fields", f"a request here takes at most {_count(max_fields, 'text field')}; send fewer")
    if "exceeded maximum size" in message:
        return Problem(413, "part_too_large", f"a text field here takes at most {max_part_size} bytes")
    return Problem(400, "malformed_multipart", f"unreadable multipart body: {message}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
