"""Multipart bodies, read as a JSON body would be: one error for an unreadable body, and
form fields (which arrive as text) typed as strictly as JSON types them."""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagegate.errors import InvalidParameter, InvalidRequest
from imagegate.services.sources import Upload, not_a_source, source_form

INTEGERS = ("n", "seed", "output_compression", "partial_images")
BOOLEANS = ("mock", "sync_mode")
# As a JSON body would carry them: ASCII digits, within 64 bits (int() and float() also
# take other scripts' digits, spaces, underscores, "inf", "nan" and any size).
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


async def read_form(
    request: Request, *, max_files: int, max_fields: int, param: str, hint: str = ""
) -> FormData:
    """The request's form, or ``400 invalid_multipart`` naming ``param`` (a malformed body,
    or more files or fields than allowed)."""
    try:
        return await request.form(max_files=max_files, max_fields=max_fields)
    except StarletteHTTPException as exc:
        if exc.status_code != 400:
            raise
        raise InvalidRequest(
            f"The multipart body cannot be read: {exc.detail}{hint}",
            code="invalid_multipart",
            param=param,
        ) from None


def text_field(name: str, value: str, numbers: tuple[str, ...] = ()) -> Any:
    """A text field with its type: the integers and booleans every image route takes, and
    ``numbers`` (any JSON number) of the route's own."""
    if "\x00" in value:
        raise InvalidParameter(
            f"Invalid value for {name!r}: NUL characters are not allowed.", param=name
        )
    if name in INTEGERS:
        if not _INTEGER.fullmatch(value):
            raise InvalidParameter(
                f"Invalid value for {name!r}: {value!r} is not an integer.", param=name
            )
        return int(value)
    if name in BOOLEANS:
        if value.lower() not in ("true", "false"):
            raise InvalidParameter(
                f"Invalid value for {name!r}: expected true or false.", param=name
            )
        return value.lower() == "true"
    if name in numbers:
        return _number(name, value)
    return value


def _number(name: str, value: str) -> float | int:
    number = float(value) if _NUMBER.fullmatch(value) else math.nan
    if not math.isfinite(number):
        raise InvalidParameter(
            f"Invalid value for {name!r}: {value!r} is not a number.", param=name
        )
    # Integral values become integers only within 64 bits, as in a JSON body.
    return int(number) if number.is_integer() and abs(number) < 2**63 else number


def source_part(value: Any, param: str) -> Any:
    """A multipart part as a source image: a file part as an upload, text as it is."""
    if isinstance(value, UploadFile):
        return Upload(value.file, value.size or 0, value.filename, value.content_type)
    if not isinstance(value, str) or source_form(value) is None:
        raise not_a_source(param)
    return value
