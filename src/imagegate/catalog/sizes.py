"""Sizes: from what a caller asks for to the model's native field and the real pixels.

Callers say what they want in many ways: OpenAI ``size`` (``WxH``), ``aspect_ratio``,
fal ``image_size`` (a preset name or ``{width, height}``), ``resolution`` (1K/2K/4K) or
the wrapper ``format``. Each becomes the value of the model's own size field, and
:func:`output_dimensions` says what the model really returns for it.

A size the model does not offer is snapped to the offered size of the same aspect
ratio nearest in pixel count (the response reports the real dimensions and a
notice), or is rejected with the supported list. It never becomes another aspect
ratio, except where the catalog records that the provider itself answers a ratio
with another shape (OpenAI returns 3:2 for 16:9).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from imagegate.catalog.spec import ModelSpec, SizeSpec
from imagegate.errors import InvalidParameter

# ASCII digits only, matched whole: no other scripts' digits, no surrounding whitespace.
_WXH = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")
_RATIO = re.compile(r"([0-9]{1,3}):([0-9]{1,3})")
RATIO_TOLERANCE = 0.01
# fal's named image_size presets, as aspect ratios.
PRESET_RATIOS = {
    "square_hd": "1:1",
    "square": "1:1",
    "portrait_4_3": "3:4",
    "portrait_16_9": "9:16",
    "landscape_4_3": "4:3",
    "landscape_16_9": "16:9",
}


@dataclass(slots=True)
class SizeChoice:
    """Native parameter values for a requested size, and what to tell the caller."""

    native: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def parse_wxh(value: str, param: str = "size") -> tuple[int, int]:
    match = _WXH.fullmatch(value)
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise InvalidParameter(
            f"Invalid value for {param!r}: {value!r} is not WIDTHxHEIGHT (e.g. '1024x1024').",
            param=param,
        )
    return int(match.group(1)), int(match.group(2))


def parse_ratio(value: Any, param: str = "aspect_ratio") -> Fraction:
    match = _RATIO.fullmatch(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise InvalidParameter(
            f"Invalid value for {param!r}: {value!r} is not WIDTH:HEIGHT (e.g. '16:9').",
            param=param,
        )
    return Fraction(int(match.group(1)), int(match.group(2)))


def _ratio_text(ratio: Fraction) -> str:
    return f"{ratio.numerator}:{ratio.denominator}"


def _same_ratio(a: float, b: float) -> bool:
    return abs(a / b - 1) <= RATIO_TOLERANCE


def _custom_fits(spec: SizeSpec, width: int, height: int) -> bool:
    custom = spec.custom
    if custom is None:
        return False
    pixels = width * height
    return (
        custom.min <= width <= custom.max
        and custom.min <= height <= custom.max
        and (custom.min_pixels is None or pixels >= custom.min_pixels)
        and (custom.max_pixels is None or pixels <= custom.max_pixels)
    )


def fit_custom(spec: SizeSpec, width: int, height: int) -> tuple[int, int]:
    """``width`` x ``height`` scaled, keeping its shape, into the custom-size bounds."""
    custom = spec.custom
    if custom is None or _custom_fits(spec, width, height):
        return width, height
    pixels = width * height
    grow = max(
        custom.min / min(width, height),
        math.sqrt(custom.min_pixels / pixels) if custom.min_pixels else 0.0,
        1.0,
    )
    shrink = min(
        custom.max / max(width, height),
        math.sqrt(custom.max_pixels / pixels) if custom.max_pixels else math.inf,
        1.0,
    )
    factor = grow if grow > 1.0 else shrink
    return math.ceil(width * factor), math.ceil(height * factor)


def check_custom(
    model: ModelSpec, value: dict[str, Any], param: str
) -> tuple[dict[str, Any], list[str]]:
    """An explicit ``{width, height}``: scaled where the provider scales, else checked."""
    spec = model.sizes
    width, height = int(value["width"]), int(value["height"])
    if spec.custom is None or _custom_fits(spec, width, height):
        return value, []
    if spec.custom.scale:
        w, h = fit_custom(spec, width, height)
        return value, [
            f"{width}x{height} is outside {model.slug}'s pixel bounds; it returns {w}x{h}."
        ]
    custom = spec.custom
    raise InvalidParameter(
        f"Invalid value for {param!r}: {width}x{height} is outside the bounds of {model.slug!r}: "
        f"each side {custom.min}-{custom.max} px, "
        f"{custom.min_pixels or 1}-{custom.max_pixels or 'any'} pixels in total.",
        param=param,
    )


def aspect_ratios(spec: SizeSpec) -> list[str]:
    """The aspect ratios a caller may ask for."""
    if spec.style == "aspect_ratio":
        return [name for name in spec.options if _RATIO.match(name)]
    seen: dict[str, None] = dict.fromkeys(spec.aspect_ratios)
    for native, (width, height) in spec.options.items():
        if native != "auto" and not native.startswith("auto_"):
            seen.setdefault(_ratio_text(Fraction(width, height)), None)
    return list(seen)


def _unsupported(model: ModelSpec, asked: str, param: str) -> InvalidParameter:
    spec = model.sizes
    supported = spec.supported_sizes()
    ratios = aspect_ratios(spec)
    message = (
        f"Invalid value for {param!r}: {asked!r} is not supported by {model.slug!r}. "
        f"Supported sizes: {', '.join(supported) or 'none'}; "
        f"aspect ratios: {', '.join(ratios) or 'none'}."
    )
    if spec.custom is not None:
        custom = spec.custom
        message += f" Custom sizes: each side {custom.min}-{custom.max} px"
        if custom.min_pixels is not None or custom.max_pixels is not None:
            message += f", {custom.min_pixels or 1}-{custom.max_pixels or 'any'} pixels in total"
        message += "."
    return InvalidParameter(
        message, param=param, extra={"supported_sizes": supported, "aspect_ratios": ratios}
    )


def _needs_field(model: ModelSpec, param: str) -> str:
    if model.sizes.field is None:
        raise InvalidParameter(
            f"Model {model.slug!r} does not take a size ({param!r}).",
            param=param,
            extra={"supported_sizes": []},
        )
    return model.sizes.field


def _scales(model: ModelSpec, resolution: Any) -> dict[str | None, float]:
    spec = model.sizes
    if spec.resolution_field is None:
        return {None: 1.0}
    if resolution is not None:
        return {str(resolution): spec.resolution_scale.get(str(resolution), 1.0)}
    default = model.params[spec.resolution_field].default
    scales: dict[str | None, float] = {None: spec.resolution_scale.get(str(default), 1.0)}
    scales.update(spec.resolution_scale)
    return scales


def from_wxh(
    model: ModelSpec, value: str, param: str = "size", resolution: Any = None
) -> SizeChoice:
    """A ``WxH`` request (or ``auto``) as native values, snapped where it must be."""
    spec = model.sizes
    size_field = _needs_field(model, param)
    if value == "auto":
        native = "auto" if "auto" in spec.options else spec.default
        return SizeChoice({size_field: native} if native is not None else {})
    width, height = parse_wxh(value, param)
    for res, scale in _scales(model, resolution).items():
        for native, (w, h) in spec.options.items():
            if (round(w * scale), round(h * scale)) == (width, height) and not native.startswith(
                "auto"
            ):
                chosen: dict[str, Any] = {size_field: native}
                if res is not None and spec.resolution_field is not None:
                    chosen[spec.resolution_field] = res
                return SizeChoice(chosen)
    if _custom_fits(spec, width, height) and "object" in model.params[size_field].types:
        return SizeChoice({size_field: {"width": width, "height": height}})
    return _snap(model, Fraction(width, height), width * height, value, param, resolution)


def _snap(
    model: ModelSpec, ratio: Fraction, pixels: int, asked: str, param: str, resolution: Any
) -> SizeChoice:
    spec = model.sizes
    size_field = spec.field
    assert size_field is not None
    scale = next(iter(_scales(model, resolution).values()))
    candidates: list[tuple[str, int, int]] = []
    for native, (w, h) in spec.options.items():
        named = _RATIO.match(native) is not None and _same_ratio(
            float(parse_ratio(native)), float(ratio)
        )
        if not native.startswith("auto") and (named or _same_ratio(w / h, float(ratio))):
            candidates.append((native, round(w * scale), round(h * scale)))
    documented = next(
        (
            opt
            for r, opt in spec.aspect_ratios.items()
            if _same_ratio(float(parse_ratio(r)), float(ratio))
        ),
        None,
    )
    if not candidates and documented is not None:
        w, h = spec.options[documented]
        candidates.append((documented, round(w * scale), round(h * scale)))
    if not candidates:
        if (
            spec.style == "aspect_ratio"
            and spec.free_form_pixels
            and model.params[size_field].free_form
        ):
            text = _ratio_text(ratio)
            return SizeChoice(
                {size_field: text},
                [f"{asked} is not offered by {model.slug}; asked for aspect ratio {text} instead."],
            )
        raise _unsupported(model, asked, param)
    native, w, h = min(candidates, key=lambda c: abs(math.log(c[1] * c[2] / pixels)))
    chosen: dict[str, Any] = {size_field: native}
    if resolution is not None and spec.resolution_field is not None:
        chosen[spec.resolution_field] = resolution
    notice = f"{asked} is not offered by {model.slug}; it returns {w}x{h} for this aspect ratio."
    return SizeChoice(chosen, [notice])


def from_aspect_ratio(
    model: ModelSpec, value: Any, param: str = "aspect_ratio", resolution: Any = None
) -> SizeChoice:
    """An ``aspect_ratio`` request as native values."""
    spec = model.sizes
    size_field = _needs_field(model, param)
    if spec.style == "aspect_ratio":
        if value in spec.options or (isinstance(value, str) and model.params[size_field].free_form):
            if value not in spec.options:
                parse_ratio(value, param)
            return SizeChoice({size_field: value})
        raise _unsupported(model, str(value), param)
    if value == "auto":
        return from_wxh(model, "auto", param)
    ratio = parse_ratio(value, param)
    if value in spec.aspect_ratios:
        native = spec.aspect_ratios[value]
        w, h = spec.options[native]
        notices = (
            []
            if _same_ratio(w / h, float(ratio))
            else [f"{model.slug} returns {w}x{h} for {value}."]
        )
        return SizeChoice({size_field: native}, notices)
    base = spec.options.get(spec.default or "", (1024, 1024))
    pixels = base[0] * base[1]
    same = [
        (native, w * h)
        for native, (w, h) in spec.options.items()
        if not native.startswith("auto") and _same_ratio(w / h, float(ratio))
    ]
    if same:
        native = min(same, key=lambda item: abs(math.log(item[1] / pixels)))[0]
        return SizeChoice({size_field: native})
    if spec.custom is not None and "object" in model.params[size_field].types:
        height = round(math.sqrt(pixels / float(ratio)) / 16) * 16
        width = round(height * float(ratio) / 16) * 16
        if _custom_fits(spec, width, height):
            return SizeChoice({size_field: {"width": width, "height": height}})
    return _snap(model, ratio, pixels, str(value), param, resolution)


def from_image_size(model: ModelSpec, value: Any, param: str = "image_size") -> SizeChoice:
    """A fal ``image_size`` (preset name or ``{width, height}``) for a model that may not use it."""
    if isinstance(value, dict):
        width, height = value.get("width"), value.get("height")
        if not isinstance(width, int) or not isinstance(height, int) or isinstance(width, bool):
            raise InvalidParameter(
                f"Invalid value for {param!r}: expected {{'width': int, 'height': int}}.",
                param=param,
            )
        return from_wxh(model, f"{width}x{height}", param)
    if value in PRESET_RATIOS:
        return from_aspect_ratio(model, PRESET_RATIOS[value], param)
    raise InvalidParameter(
        f"Invalid value for {param!r}: {value!r}. "
        f"Allowed: {', '.join(PRESET_RATIOS)} or {{width, height}}.",
        param=param,
    )


def _free_form_dims(spec: SizeSpec, value: str) -> tuple[int, int] | None:
    if spec.free_form_pixels is None or not _RATIO.match(value):
        return None
    ratio = float(parse_ratio(value))
    height = round(math.sqrt(spec.free_form_pixels / ratio) / 32) * 32
    width = round(height * ratio / 32) * 32
    return width, height


def output_dimensions(model: ModelSpec, params: dict[str, Any]) -> tuple[int, int]:
    """The pixel size the model will really return for validated native ``params``."""
    spec = model.sizes
    width, height = 1024, 1024
    if spec.default is not None:
        width, height = spec.options[spec.default]
    if spec.field is not None:
        value = params.get(spec.field, spec.default)
        if isinstance(value, dict) and "width" in value and "height" in value:
            width, height = int(value["width"]), int(value["height"])
            if spec.custom is not None and spec.custom.scale:
                return fit_custom(spec, width, height)  # the provider scales into its bounds
            return width, height
        if isinstance(value, str) and value in spec.options:
            width, height = spec.options[value]
        elif isinstance(value, str) and (dims := _free_form_dims(spec, value)) is not None:
            width, height = dims
    if spec.resolution_field is not None:
        scale = spec.resolution_scale.get(str(params.get(spec.resolution_field)), 1.0)
        width, height = round(width * scale), round(height * scale)
    return width, height
