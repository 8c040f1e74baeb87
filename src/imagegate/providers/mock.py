"""The mock provider: free, deterministic placeholder images that say what they stand for."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import random
import textwrap
from html import escape

from PIL import Image, ImageDraw, ImageFont

from imagegate.providers.base import GeneratedImage, ProviderRequest, ProviderResult

CONTENT_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "svg": "image/svg+xml",
}


def _seed_material(request: ProviderRequest, index: int) -> bytes:
    material = {
        "model": request.model,
        "prompt": request.prompt,
        "seed": request.seed,
        "size": [request.width, request.height],
        "format": request.output_format,
        "params": request.params,
        "index": index,
    }
    return json.dumps(material, sort_keys=True, default=str).encode()


def _palette(digest: bytes) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    rng = random.Random(digest)
    hue = [rng.randrange(40, 200) for _ in range(3)]
    dark = (hue[0] // 3, hue[1] // 3, hue[2] // 3)
    return (hue[0], hue[1], hue[2]), dark


def _caption(request: ProviderRequest, index: int) -> list[str]:
    prompt = (request.prompt or "").strip().replace("\n", " ")
    lines = ["PLACEHOLDER", request.model, f"{request.width}x{request.height}"]
    if request.n > 1:
        lines.append(f"image {index + 1} of {request.n}")
    lines.extend(textwrap.wrap(prompt[:120], width=32)[:3])
    return lines


def _placeholder(request: ProviderRequest, index: int) -> Image.Image:
    digest = hashlib.sha256(_seed_material(request, index)).digest()
    light, dark = _palette(digest)
    width, height = request.width, request.height
    image = Image.new("RGB", (width, height), dark)
    draw = ImageDraw.Draw(image)
    rng = random.Random(digest)
    for _ in range(6):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        radius = rng.randrange(max(2, min(width, height) // 8), max(3, min(width, height) // 3))
        colour = tuple(min(255, c + rng.randrange(0, 60)) for c in light)
        draw.ellipse((x0 - radius, y0 - radius, x0 + radius, y0 + radius), fill=colour)
    if request.inputs:
        with Image.open(io.BytesIO(request.inputs[0].data)) as source:
            source.draft("RGB", (max(1, width // 3), max(1, height // 3)))
            thumb = source.convert("RGB")
            thumb.thumbnail((width // 3, height // 3))
            image.paste(thumb, (width - thumb.width - 8, 8))
    font_size = max(10, min(width, height) // 18)
    font = ImageFont.load_default(size=font_size)
    y = height // 6
    for line in _caption(request, index):
        box = draw.textbbox((0, 0), line, font=font)
        x = max(4, (width - (box[2] - box[0])) // 2)
        draw.text(
            (x, y), line, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0)
        )
        y += int(font_size * 1.4)
    return image


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, "PNG", compress_level=1)
    elif fmt in ("jpeg", "jpg"):
        image.save(out, "JPEG", quality=85)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=80, method=0)
    else:
        raise ValueError(f"mock cannot write {fmt}")
    return out.getvalue()


def _open_rgb(data: bytes, size: tuple[int, int]) -> Image.Image:
    """An input image as RGB at ``size`` (JPEG decoded at a reduced scale where it can)."""
    with Image.open(io.BytesIO(data)) as source:
        source.draft("RGB", size)
        return source.convert("RGB").resize(size)


def _edit_region(mask: bytes, size: tuple[int, int]) -> Image.Image:
    """Where an edit may change the image (white), from a mask as OpenAI reads one: its
    fully transparent pixels; a mask without transparency: its light pixels."""
    with Image.open(io.BytesIO(mask)) as image:
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            alpha = image.convert("RGBA").getchannel("A")
            region = alpha.point(lambda a: 255 if a == 0 else 0)
        else:
            region = image.convert("L").point(lambda v: 255 if v > 127 else 0)
        return region.resize(size, Image.Resampling.NEAREST)


def render_raster(request: ProviderRequest, index: int) -> bytes:
    """A placeholder as a user expects one: an upscale is the input resized by the factor;
    an edit with a mask changes only the masked area of the source; otherwise a
    placeholder image that says what it stands for (with a thumbnail of any input)."""
    size = (request.width, request.height)
    if request.inputs and request.action == "upscale":
        return _encode(_open_rgb(request.inputs[0].data, size), request.output_format)
    image = _placeholder(request, index)
    if request.inputs and request.mask is not None:
        source = _open_rgb(request.inputs[0].data, size)
        image = Image.composite(image, source, _edit_region(request.mask.data, size))
    return _encode(image, request.output_format)


def render_svg(request: ProviderRequest, index: int) -> bytes:
    digest = hashlib.sha256(_seed_material(request, index)).digest()
    light, dark = _palette(digest)
    width, height = request.width, request.height
    rng = random.Random(digest)
    shapes = []
    for _ in range(5):
        cx, cy = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(max(2, min(width, height) // 8), max(3, min(width, height) // 3))
        shapes.append(f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="rgb{light}" fill-opacity="0.6"/>')
    size = max(10, min(width, height) // 18)
    texts = []
    for i, line in enumerate(_caption(request, index)):
        y = height // 6 + int(i * size * 1.4)
        texts.append(
            f'<text x="{width // 2}" y="{y}" font-size="{size}" text-anchor="middle" '
            f'font-family="sans-serif" fill="#fff">{escape(line)}</text>'
        )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="rgb{dark}"/>'
        + "".join(shapes)
        + "".join(texts)
        + "</svg>"
    )
    return svg.encode()


class MockProvider:
    """Placeholders of the right size and format, at no cost, the same for the same input."""

    name = "mock"

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if self.latency:
            await asyncio.sleep(self.latency)
        return await asyncio.to_thread(self._generate, request)

    def _generate(self, request: ProviderRequest) -> ProviderResult:
        render = render_svg if request.output_format == "svg" else render_raster
        images = [
            GeneratedImage(
                data=render(request, index),
                content_type=CONTENT_TYPES[request.output_format],
                width=request.width,
                height=request.height,
                revised_prompt=request.prompt,
            )
            for index in range(request.n)
        ]
        return ProviderResult(images=images, provider_request_id=f"mock-{request.job_id}")
