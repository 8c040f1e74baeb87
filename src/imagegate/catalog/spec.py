"""The shape of a catalog entry. The YAML files in ``data/`` are parsed into these."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

Action = Literal["generate", "edit", "upscale"]
ParamType = Literal["string", "integer", "number", "boolean", "array", "object", "null"]


def to_millicredits(value: Any) -> int:
    """Credits as written in the data (``1``, ``1.5``, ``"0.25"``) to integer millicredits."""
    amount = Decimal(str(value)) * 1000
    if amount != amount.to_integral_value():
        raise ValueError(f"{value!r} credits is finer than 0.001")
    return int(amount)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Strict):
    """One parameter of a model's input schema."""

    type: ParamType | list[ParamType]
    description: str = ""
    required: bool = False
    default: Any = None
    enum: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    items: ParamSpec | None = None
    properties: dict[str, ParamSpec] | None = None
    free_form: bool = Field(default=False, description="Values outside enum are also accepted.")

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set

    @property
    def types(self) -> list[ParamType]:
        return list(self.type) if isinstance(self.type, list) else [self.type]


class SizeSpec(_Strict):
    """How a model is told its output size, and what each choice really yields.

    ``options`` maps each native value of ``field`` to its output (width, height) at
    base resolution. ``style`` says how the native value is written: ``wxh`` strings
    (OpenAI), ``aspect_ratio`` strings, or named ``preset`` s (fal ``image_size``).
    """

    field: str | None = None
    style: Literal["wxh", "aspect_ratio", "preset", "none"] = "none"
    options: dict[str, tuple[int, int]] = Field(default_factory=dict)
    default: str | None = None
    custom: dict[str, int] | None = Field(
        default=None,
        description="Bounds when {width, height} is allowed: min, max, min_pixels, max_pixels.",
    )
    resolution_field: str | None = None
    resolution_scale: dict[str, float] = Field(default_factory=dict)
    format_mapping: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_is_an_option(self) -> SizeSpec:
        if self.default is not None and self.options and self.default not in self.options:
            raise ValueError(f"size default {self.default!r} is not among the options")
        return self

    def supported_sizes(self) -> list[str]:
        seen: dict[str, None] = {}
        for width, height in self.options.values():
            seen.setdefault(f"{width}x{height}", None)
        return list(seen)


class PriceSpec(_Strict):
    """A price rule. Amounts are credits in the data and millicredits in code."""

    rule: Literal["free", "per_image", "per_megapixel", "per_quality"]
    credits: int = 0
    rounding: Literal["up", "nearest"] = "up"
    by_quality: dict[str, int] = Field(default_factory=dict)
    multipliers: dict[str, dict[str, float]] = Field(default_factory=dict)
    extras: dict[str, int] = Field(default_factory=dict)

    @field_validator("credits", mode="before")
    @classmethod
    def _credits(cls, value: Any) -> int:
        return to_millicredits(value)

    @field_validator("by_quality", "extras", mode="before")
    @classmethod
    def _credit_maps(cls, value: Any) -> dict[str, int]:
        return {key: to_millicredits(amount) for key, amount in (value or {}).items()}


class Route(_Strict):
    provider: str
    upstream_id: str
    region: str | None = None


def _generate_only() -> list[Action]:
    return ["generate"]


class ModelSpec(_Strict):
    """One model: what it accepts, returns, costs and where it runs."""

    slug: str
    name: str
    provider: str
    description: str = ""
    aliases: list[str] = Field(default_factory=list)
    modality: Literal["image"] = "image"
    actions: list[Action] = Field(default_factory=_generate_only)
    vector: bool = False
    status: Literal["ga", "preview", "deprecated", "legacy"] = "ga"
    replacement: str | None = None
    region: Literal["eu", "us", "global"] = "global"
    tier: Literal["standard", "advanced", "premium", "ultra"] = "standard"
    premium: bool = False
    reference_images: bool = False
    stars: int | None = Field(default=None, ge=1, le=5)
    mode: Literal["sync", "async"] = "sync"
    timeout_s: float = 60.0
    output_formats: list[str] = Field(default_factory=lambda: ["png"])
    prompt_field: str | None = "prompt"
    count_field: str | None = None
    format_field: str | None = None
    seed_field: str | None = None
    params: dict[str, ParamSpec]
    sizes: SizeSpec = Field(default_factory=SizeSpec)
    price: PriceSpec
    routes: list[Route]
    provenance: str
    _validator: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _fields_exist(self) -> ModelSpec:
        for name in (self.prompt_field, self.count_field, self.format_field, self.seed_field):
            if name is not None and name not in self.params:
                raise ValueError(f"{self.slug}: field {name!r} is not a parameter")
        if self.sizes.field is not None and self.sizes.field not in self.params:
            raise ValueError(f"{self.slug}: size field {self.sizes.field!r} is not a parameter")
        if not self.routes:
            raise ValueError(f"{self.slug}: no route")
        return self

    @property
    def default_output_format(self) -> str:
        if self.format_field is not None:
            default = self.params[self.format_field].default
            if isinstance(default, str):
                return default
        return self.output_formats[0]
