"""A model's parameters as a validator (pydantic) and as JSON Schema, from one description."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
)

from imagegate.catalog.spec import ModelSpec, ParamSpec
from imagegate.errors import InvalidParameter


def _scalar(spec: ParamSpec, kind: str, name: str) -> Any:
    if kind == "string":
        if spec.enum and not spec.free_form:
            return Literal[tuple(spec.enum)]
        return Annotated[
            StrictStr,
            Field(min_length=spec.min_length, max_length=spec.max_length, pattern=spec.pattern),
        ]
    if kind == "integer":
        if spec.enum:
            return Literal[tuple(spec.enum)]
        return Annotated[StrictInt, Field(ge=spec.minimum, le=spec.maximum)]
    if kind == "number":
        return Annotated[
            float, Field(ge=spec.minimum, le=spec.maximum, strict=True, allow_inf_nan=False)
        ]
    if kind == "boolean":
        return StrictBool
    if kind == "null":
        return None
    if kind == "array":
        item = _annotation(spec.items, f"{name}_item") if spec.items else Any
        return Annotated[list[item], Field(min_length=spec.min_items, max_length=spec.max_items)]  # type: ignore[valid-type]
    if kind == "object":
        fields: dict[str, Any] = {}
        for key, sub in (spec.properties or {}).items():
            fields[key] = (_annotation(sub, key), ... if sub.required else None)
        return create_model(f"{name}_object", __config__=ConfigDict(extra="forbid"), **fields)
    raise ValueError(f"unknown type {kind}")


def _annotation(spec: ParamSpec, name: str) -> Any:
    options = [_scalar(spec, kind, name) for kind in spec.types]
    if spec.has_default and spec.default is None and "null" not in spec.types:
        options.append(None)  # a documented null default may also be sent explicitly
    if len(options) == 1:
        return options[0]
    return Union[tuple(options)]  # noqa: UP007 - built at run time


def validator_for(model: ModelSpec) -> type[BaseModel]:
    """The model's parameter validator, built once per catalog entry."""
    cached: type[BaseModel] | None = model._validator
    if cached is None:
        fields: dict[str, Any] = {}
        for name, spec in model.params.items():
            fields[name] = (_annotation(spec, name), ... if spec.required else None)
        cached = create_model(
            f"{model.slug}_params", __config__=ConfigDict(extra="forbid"), **fields
        )
        model._validator = cached
    return cached


def _describe_allowed(spec: ParamSpec) -> str:
    if spec.enum:
        allowed = "one of " + ", ".join(repr(v) for v in spec.enum)
        if spec.properties is not None:
            bounds = ", ".join(f"{k} {_describe_allowed(v)}" for k, v in spec.properties.items())
            allowed += f", or an object with {bounds}"
        return allowed
    parts = []
    if spec.minimum is not None and spec.minimum == spec.maximum:
        parts.append(f"exactly {spec.minimum:g}")
    elif spec.minimum is not None and spec.maximum is not None:
        parts.append(f"between {spec.minimum:g} and {spec.maximum:g}")
    elif spec.minimum is not None:
        parts.append(f"at least {spec.minimum:g}")
    elif spec.maximum is not None:
        parts.append(f"at most {spec.maximum:g}")
    if spec.min_length is not None and spec.max_length is not None:
        parts.append(f"{spec.min_length} to {spec.max_length} characters")
    elif spec.max_length is not None:
        parts.append(f"at most {spec.max_length} characters")
    elif spec.min_length is not None:
        parts.append(f"at least {spec.min_length} characters")
    if spec.max_items is not None:
        parts.append(f"at most {spec.max_items} items")
    kinds = " or ".join(spec.types)
    return f"{kinds} {' '.join(parts)}".strip()


def validate_params(
    model: ModelSpec, params: dict[str, Any], *, rename: dict[str, str] | None = None
) -> dict[str, Any]:
    """Validated native parameters with the schema's defaults filled in.

    ``rename`` maps native names back to the names the caller used (OpenAI's ``n``
    for ``num_images``), so an error names what the caller sent.
    """
    rename = rename or {}
    try:
        validated = validator_for(model).model_validate(params)
    except ValidationError as exc:
        raise _to_invalid_parameter(model, exc, rename) from None
    values = validated.model_dump(exclude_unset=True, mode="json")
    result = {name: spec.default for name, spec in model.params.items() if spec.has_default}
    result.update(values)
    return result


def _clean_loc(model: ModelSpec, loc: tuple[Any, ...]) -> tuple[list[str], ParamSpec | None]:
    """An error location without pydantic's union-member tags, and the spec it points at."""
    if not loc:
        return [], None
    parts = [str(loc[0])]
    spec = model.params.get(parts[0])
    for part in loc[1:]:
        if isinstance(part, int):
            parts.append(str(part))
            spec = spec.items if spec is not None else None
        elif spec is not None and spec.properties is not None and part in spec.properties:
            parts.append(str(part))
            spec = spec.properties[part]
    return parts, spec


def _to_invalid_parameter(
    model: ModelSpec, exc: ValidationError, rename: dict[str, str]
) -> InvalidParameter:
    # Of a union's errors, the one reaching deepest into the value says most.
    errors = exc.errors()
    cleaned = [(_clean_loc(model, tuple(e["loc"])), e) for e in errors]
    (loc, spec), error = max(
        cleaned, key=lambda item: (len(item[0][0]), item[1]["type"] != "literal_error")
    )
    name = loc[0] if loc else None
    shown = rename.get(name, name) if name else None
    param = ".".join([shown, *loc[1:]]) if shown else None
    if error["type"] == "extra_forbidden":
        if len(loc) > 1 or (loc and loc[0] in model.params):
            return InvalidParameter(
                f"Unknown field in {param!r}: {error['loc'][-1]!r}.", param=param
            )
        param = rename.get(str(error["loc"][0]), str(error["loc"][0]))
        allowed = ", ".join(sorted(rename.get(p, p) for p in model.params))
        return InvalidParameter(
            f"Unknown parameter {param!r} for model {model.slug!r}. Allowed: {allowed}.",
            param=param,
        )
    if error["type"] == "missing":
        return InvalidParameter(f"Missing required parameter {param!r}.", param=param)
    allowed = f" Allowed: {_describe_allowed(spec)}." if spec is not None else ""
    if spec is not None and spec.enum and error["type"] in ("literal_error", "enum"):
        # The list is said once, in "Allowed", not also in the validator's message.
        return InvalidParameter(
            f"Invalid value for {param!r}: {error['input']!r}.{allowed}", param=param
        )
    return InvalidParameter(f"Invalid value for {param!r}: {error['msg']}.{allowed}", param=param)


def _schema(spec: ParamSpec) -> dict[str, Any]:
    types = spec.types
    if len(types) > 1 and (spec.enum is not None or spec.properties is not None):
        # An enum or properties apply to one of the types only: say so with anyOf.
        out: dict[str, Any] = {
            "anyOf": [
                _schema(spec.model_copy(update={"type": kind, "description": ""})) for kind in types
            ]
        }
        for branch in out["anyOf"]:
            branch.pop("default", None)
        if spec.description:
            out["description"] = spec.description
        if spec.has_default:
            out["default"] = spec.default
        return out
    out = {"type": types[0] if len(types) == 1 else types}
    if spec.description:
        out["description"] = spec.description
    if spec.has_default:
        out["default"] = spec.default
    if spec.enum is not None and types[0] in ("string", "integer", "number"):
        if spec.free_form:
            out["examples"] = spec.enum
        else:
            out["enum"] = spec.enum
    if spec.pattern is not None and "string" in types:
        out["pattern"] = spec.pattern
    for key, value in (
        ("minimum", spec.minimum),
        ("maximum", spec.maximum),
        ("minLength", spec.min_length),
        ("maxLength", spec.max_length),
        ("minItems", spec.min_items),
        ("maxItems", spec.max_items),
    ):
        if value is not None:
            out[key] = int(value) if isinstance(value, float) and value.is_integer() else value
    if spec.items is not None:
        out["items"] = _schema(spec.items)
    if spec.properties is not None and "object" in types:
        out["properties"] = {k: _schema(v) for k, v in spec.properties.items()}
        out["required"] = [k for k, v in spec.properties.items() if v.required]
        out["additionalProperties"] = False
    return out


def json_schema(model: ModelSpec) -> dict[str, Any]:
    """The model's input schema as JSON Schema (draft 2020-12)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": model.name,
        "type": "object",
        "properties": {name: _schema(spec) for name, spec in model.params.items()},
        "required": [name for name, spec in model.params.items() if spec.required],
        "additionalProperties": False,
    }
