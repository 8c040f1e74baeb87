"""The shape of a catalog entry. The YAML files in ``data/`` are parsed into these."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

ParamType = Literal["string", "integer", "number", "boolean", "array", "object", "null"]
Action = Literal["generate", "edit", "upscale"]
Region = Literal["eu", "us", "global"]
Status = Literal["ga", "preview", "deprecated", "legacy"]
Tier = Literal["standard", "advanced", "premium", "ultra"]

MILLI = 1000  # millicredits per credit
MICRO = 1_000_000  # micro-dollars per US dollar


def _exact(value: Any, scale: int, unit: str) -> int:
    amount = Decimal(str(value)) * scale
    if amount != amount.to_integral_value():
        raise ValueError(f"{value!r} {unit} is finer than 1/{scale}")
    return int(amount)


def to_millicredits(value: Any) -> int:
    """Credits as written in the data (``1``, ``1.5``, ``"0.25"``) to integer millicredits."""
    return _exact(value, MILLI, "credits")


def to_microdollars(value: Any) -> int:
    """US dollars as written in the data (``0.054``) to integer micro-dollars."""
    return _exact(value, MICRO, "USD")


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
    pattern: str | None = Field(
        default=None, description="A regular expression string values match."
    )

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set

    @property
    def types(self) -> list[ParamType]:
        return list(self.type) if isinstance(self.type, list) else [self.type]


class CustomSize(_Strict):
    """Bounds for an explicit ``{width, height}`` size: per side and in total pixels."""

    min: int = 1
    max: int = 14142
    min_pixels: int | None = None
    max_pixels: int | None = None
    scale: bool = Field(
        default=False, description="The provider scales sizes outside the pixel bounds into them."
    )


class SizeSpec(_Strict):
    """How a model is told its output size, and what each choice really yields.

    ``options`` maps each native value of ``field`` to its output (width, height) at
    base resolution. ``style`` says how the native value is written: ``wxh`` strings
    (OpenAI), ``aspect_ratio`` strings, or named ``preset`` s (fal ``image_size``).
    ``aspect_ratios`` names, per ratio, the option that a request for that ratio gets
    where the provider answers with another shape (OpenAI: 16:9 gives 1536x1024).
    """

    field: str | None = None
    style: Literal["wxh", "aspect_ratio", "preset", "none"] = "none"
    options: dict[str, tuple[int, int]] = Field(default_factory=dict)
    default: str | None = None
    aspect_ratios: dict[str, str] = Field(default_factory=dict)
    custom: CustomSize | None = None
    free_form_pixels: int | None = Field(
        default=None, description="Pixel budget for an aspect ratio that is not an option."
    )
    resolution_field: str | None = None
    resolution_scale: dict[str, float] = Field(default_factory=dict)
    format_mapping: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> SizeSpec:
        if self.default is not None and self.options and self.default not in self.options:
            raise ValueError(f"size default {self.default!r} is not among the options")
        for ratio, option in self.aspect_ratios.items():
            if option not in self.options:
                raise ValueError(f"aspect ratio {ratio!r} names unknown option {option!r}")
        return self

    def supported_sizes(self) -> list[str]:
        seen: dict[str, None] = {}
        for width, height in self.options.values():
            seen.setdefault(f"{width}x{height}", None)
        return list(seen)


class PriceSpec(_Strict):
    """A price rule, in the currency its source states.

    ``currency: credits`` amounts are millicredits; ``currency: usd`` amounts are
    micro-dollars, turned into millicredits at ``credits_per_usd`` (set by the loader
    from the operator's setting). Per image: a base (flat, per quality, or per
    megapixel with ``first`` for the first megapixel and ``amount`` for each further
    one), then ``multipliers``, then ``extras``, then ``markup_percent``, then rounded
    half-up to a multiple of ``round_to`` (in the same minor unit).
    """

    rule: Literal["free", "per_image", "per_megapixel", "per_quality"]
    currency: Literal["credits", "usd"] = "credits"
    amount: int = 0
    first: int | None = None
    rounding: Literal["up", "nearest"] = "up"
    by_quality: dict[str, int] = Field(default_factory=dict)
    quality_field: str = "quality"
    multipliers: dict[str, dict[str, int]] = Field(default_factory=dict)
    extras: dict[str, int] = Field(default_factory=dict)
    markup_percent: int = 100
    round_to: int = 1
    credits_per_usd: int = 200
    source: str = Field(default="", description="The price as its source states it, and where.")

    @model_validator(mode="before")
    @classmethod
    def _to_minor_units(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "credits" in data and "amount" not in data:  # the first cut's name for a credit amount
            data["amount"] = data.pop("credits")
        convert = to_microdollars if data.get("currency") == "usd" else to_millicredits
        for key in ("amount", "first", "round_to"):
            if data.get(key) is not None:
                data[key] = convert(data[key])
        for key in ("by_quality", "extras"):
            if key in data:
                data[key] = {k: convert(v) for k, v in (data[key] or {}).items()}
        if "round_to" not in data:
            data["round_to"] = 1
        return data

    @field_validator("credits_per_usd", "markup_percent")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive")
        return value


class Route(_Strict):
    """One way to reach the model: a provider adapter and its upstream model id."""

    provider: str
    upstream_id: str
    region: Region | None = None


class ReferenceLimit(_Strict):
    """Reference (input) images: which parameter holds them and how many may be sent."""

    field: str
    max: int
    required: bool = False
    overflow: Literal["reject", "keep_last"] = "reject"


class Limits(_Strict):
    """Rules across parameters that a per-field schema cannot say."""

    references: ReferenceLimit | None = None
    max_total_images: int | None = Field(
        default=None, description="References plus images made per generation."
    )
    outputs_per_generation_field: str | None = None


def _generate_only() -> list[Action]:
    return ["generate"]


class ModelSpec(_Strict):
    """One model: what it accepts, returns, costs and where it runs."""

    slug: str
    name: str
    provider: str
    provider_name: str = ""
    description: str = ""
    aliases: list[str] = Field(default_factory=list)
    modality: Literal["image"] = "image"
    actions: list[Action] = Field(default_factory=_generate_only)
    vector: bool = False
    status: Status = "ga"
    replacement: str | None = None
    region: Region = "global"
    tier: Tier = "standard"
    premium: bool = False
    prc: bool = Field(
        default=False,
        description="Made by a PRC-based company: enabled only after the workspace opts in.",
    )
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
    limits: Limits = Field(default_factory=Limits)
    price: PriceSpec
    prices: dict[str, PriceSpec] = Field(
        default_factory=dict,
        description="The model's price as other public sources state it, by source key; "
        "the operator picks one with price_source (or IMAGEGATE_PRICE_SOURCES).",
    )
    price_source: str | None = Field(
        default=None, description="The key in prices whose rule is in force; None: price."
    )
    margin_percent: int | None = Field(
        default=None, ge=0, description="The operator's margin on EUR prices for this model."
    )
    safety_filter: bool = Field(
        default=True,
        description="The provider runs its own safety filter; false for self-hosted models.",
    )
    routes: list[Route]
    provenance: str
    _validator: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _fields_exist(self) -> ModelSpec:
        named = [self.prompt_field, self.count_field, self.format_field, self.seed_field]
        named += [self.sizes.field, self.sizes.resolution_field]
        if self.limits.references is not None:
            named.append(self.limits.references.field)
        named.append(self.limits.outputs_per_generation_field)
        for name in named:
            if name is not None and name not in self.params:
                raise ValueError(f"{self.slug}: field {name!r} is not a parameter")
        if not self.routes:
            raise ValueError(f"{self.slug}: no route")
        if self.status == "legacy" and self.replacement is None:
            raise ValueError(f"{self.slug}: a legacy model names its replacement")
        return self

    @property
    def default_output_format(self) -> str:
        if self.format_field is not None:
            default = self.params[self.format_field].default
            if isinstance(default, str):
                return default
        return self.output_formats[0]

    @property
    def capabilities(self) -> list[str]:
        extra = ["vector"] if self.vector else []
        extra += ["reference_images"] if self.reference_images else []
        return [*self.actions, *extra]

    @property
    def regions(self) -> list[str]:
        """Where the model can run: its own region plus every route's."""
        seen = {self.region: None}
        for route in self.routes:
            if route.region is not None:
                seen.setdefault(route.region, None)
        return list(seen)

    @property
    def providers(self) -> list[str]:
        seen = {self.provider: None}
        for route in self.routes:
            seen.setdefault(route.provider, None)
        return list(seen)
