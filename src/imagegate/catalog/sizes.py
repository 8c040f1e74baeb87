"""Sizes: from what a caller asks for to the model's native field and the real pixels."""

from __future__ import annotations

import re
from typing import Any

from imagegate.catalog.spec import ModelSpec
from imagegate.errors import InvalidParameter

_WXH = re.compile(r"^(\d{1,5})x(\d{1,5})$")


def parse_wxh(value: str, param: str = "size") -> tuple[int, int]:
    match = _WXH.match(value.strip().lower())
    if not match:
        raise InvalidParameter(
            f"Invalid value for {param!r}: {value!r} is not WIDTHxHEIGHT (e.g. '1024x1024').",
            param=param,
        )
    return int(match.group(1)), int(match.group(2))


def native_size(model: ModelSpec, size: str, param: str = "size") -> str:
    """The native value of the model's size field that yields exactly ``size`` (``WxH``)."""
    spec = model.sizes
    supported = spec.supported_sizes()
    if spec.field is None or not spec.options:
        raise InvalidParameter(
            f"Model {model.slug!r} does not take a size.",
            param=param,
            extra={"supported_sizes": []},
        )
    if size == "auto":
        if "auto" in spec.options:
            return "auto"
        assert spec.default is not None
        return spec.default
    width, height = parse_wxh(size, param)
    for native, dims in spec.options.items():
        if dims == (width, height):
            return native
    raise InvalidParameter(
        f"Invalid value for {param!r}: {size!r} is not supported by {model.slug!r}. "
        f"Supported sizes: {', '.join(supported)}.",
        param=param,
        extra={"supported_sizes": supported},
    )


def output_dimensions(model: ModelSpec, params: dict[str, Any]) -> tuple[int, int]:
    """The pixel size the model will really return for validated native ``params``."""
    spec = model.sizes
    width, height = 1024, 1024
    if spec.field is not None:
        value = params.get(spec.field, spec.default)
        if isinstance(value, dict) and "width" in value and "height" in value:
            width, height = int(value["width"]), int(value["height"])
        elif isinstance(value, str) and value in spec.options:
            width, height = spec.options[value]
        elif spec.default is not None:
            width, height = spec.options[spec.default]
    elif spec.options and spec.default is not None:
        width, height = spec.options[spec.default]
    if spec.resolution_field is not None:
        scale = spec.resolution_scale.get(str(params.get(spec.resolution_field)), 1.0)
        width, height = round(width * scale), round(height * scale)
    return width, height
