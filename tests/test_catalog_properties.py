"""Properties over the whole catalog: every request a model's schema (and limits) accept
is priced and sized; every one they reject is a 400 that names a parameter."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from imagegate.catalog import ModelSpec, ParamSpec, load_catalog
from imagegate.errors import ImagegateError, InvalidParameter
from imagegate.services.generation import plan_native, plan_openai

CATALOG = load_catalog()
MODELS = sorted(CATALOG, key=lambda m: m.slug)
PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _number(spec: ParamSpec, integer: bool) -> st.SearchStrategy[Any]:
    low = spec.minimum if spec.minimum is not None else -1_000_000
    high = spec.maximum if spec.maximum is not None else 1_000_000
    if integer:
        return st.integers(int(low), int(high))
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def valid_value(model: ModelSpec, name: str, spec: ParamSpec) -> st.SearchStrategy[Any]:
    options: list[st.SearchStrategy[Any]] = []
    for kind in spec.types:
        if kind == "string":
            limit = model.limits.references
            if name == "mask" or (limit is not None and limit.field == name):
                # An image parameter takes an image: a URL (fetched only at submit).
                options.append(st.just("https://example.com/in.png"))
            elif spec.enum:
                options.append(st.sampled_from(spec.enum))
            else:
                low = spec.min_length or 0
                options.append(
                    st.text(min_size=low, max_size=max(low, min(spec.max_length or 40, 40)))
                )
        elif kind == "integer":
            options.append(st.sampled_from(spec.enum) if spec.enum else _number(spec, True))
        elif kind == "number":
            options.append(_number(spec, False))
        elif kind == "boolean":
            options.append(st.booleans())
        elif kind == "null":
            options.append(st.none())
        elif kind == "array":
            limit = model.limits.references
            most = spec.max_items or 5
            if limit is not None and limit.field == name and limit.overflow == "reject":
                most = min(most, limit.max)
            low = max(
                spec.min_items or 0,
                1 if limit is not None and limit.field == name and limit.required else 0,
            )
            options.append(
                st.lists(
                    st.just("https://example.com/in.png"), min_size=low, max_size=max(low, most)
                )
            )
        elif kind == "object" and spec.properties is not None:
            custom = model.sizes.custom
            side = (
                st.integers(custom.min, min(custom.max, 4096)) if custom else st.integers(1, 2048)
            )
            options.append(st.fixed_dictionaries({key: side for key in spec.properties}))
    if spec.has_default and spec.default is None:
        options.append(st.none())
    return st.one_of(options)


@st.composite
def valid_request(draw: st.DrawFn) -> tuple[ModelSpec, dict[str, Any]]:
    model = draw(st.sampled_from(MODELS))
    body: dict[str, Any] = {}
    limit = model.limits.references
    for name, spec in model.params.items():
        needed = spec.required or (limit is not None and limit.required and limit.field == name)
        if needed or draw(st.booleans()):
            body[name] = draw(valid_value(model, name, spec))
    if limit is not None and limit.required and isinstance(body.get(limit.field), str):
        assume(body[limit.field] != "")
    size_field = model.sizes.field
    custom = model.sizes.custom
    if (
        size_field is not None
        and isinstance(body.get(size_field), dict)
        and custom is not None
        and not custom.scale
    ):
        pixels = body[size_field]["width"] * body[size_field]["height"]
        assume(custom.min_pixels is None or pixels >= custom.min_pixels)
        assume(custom.max_pixels is None or pixels <= custom.max_pixels)
    if model.limits.max_total_images is not None and limit is not None:
        references = len(body.get(limit.field) or [])
        per_generation = body.get(model.limits.outputs_per_generation_field or "", 1) or 1
        assume(min(references, limit.max) + per_generation <= model.limits.max_total_images)
    return model, body


@PROPERTY_SETTINGS
@given(valid_request())
def test_every_accepted_request_is_priced_and_sized(
    request: tuple[ModelSpec, dict[str, Any]],
) -> None:
    model, body = request
    plan = plan_native(model, body)
    assert plan.width > 0 and plan.height > 0
    assert plan.estimated_cost >= 0
    assert isinstance(plan.estimated_cost, int)
    assert plan.n >= 1
    if model.price.rule != "free":
        assert plan.estimated_cost > 0
    assert plan.output_format in model.output_formats


def invalid_value(spec: ParamSpec) -> st.SearchStrategy[Any]:
    """A value of the wrong kind, or out of the allowed set or range."""
    wrong: list[st.SearchStrategy[Any]] = []
    kinds = set(spec.types)
    if "string" not in kinds:
        wrong.append(st.just("not-a-valid-value"))
    if not kinds & {"integer", "number"}:
        wrong.append(st.just(12345))
    if "array" not in kinds:
        wrong.append(st.just([1, 2]))
    if "object" not in kinds:
        wrong.append(st.just({"unexpected": True}))
    if spec.enum and not spec.free_form and "string" in kinds:
        wrong.append(st.text(min_size=1, max_size=10).filter(lambda v: v not in spec.enum))
    if spec.maximum is not None:
        wrong.append(st.just(int(spec.maximum) + 1 if "integer" in kinds else spec.maximum + 0.5))
    if spec.minimum is not None:
        wrong.append(st.just(int(spec.minimum) - 1 if "integer" in kinds else spec.minimum - 0.5))
    if spec.max_length is not None:
        wrong.append(st.just("x" * (spec.max_length + 1)))
    return st.one_of(wrong)


@st.composite
def invalid_request(draw: st.DrawFn) -> tuple[ModelSpec, dict[str, Any], str]:
    model, body = draw(valid_request())
    how = draw(st.sampled_from(["value", "unknown", "missing"]))
    required = [name for name, spec in model.params.items() if spec.required]
    if how == "missing" and required:
        name = draw(st.sampled_from(required))
        body.pop(name, None)
        return model, body, name
    if how == "unknown":
        body["not_a_parameter"] = 1
        return model, body, "not_a_parameter"
    name = draw(st.sampled_from(sorted(model.params)))
    body[name] = draw(invalid_value(model.params[name]))
    return model, body, name


@PROPERTY_SETTINGS
@given(invalid_request())
def test_every_rejected_request_is_a_400_naming_the_param(
    request: tuple[ModelSpec, dict[str, Any], str],
) -> None:
    model, body, name = request
    with pytest.raises(ImagegateError) as caught:
        plan_native(model, body)
    error = caught.value
    assert isinstance(error, InvalidParameter)
    assert error.status_code == 400
    assert error.param is not None
    # The parameter, or an item or field of it (image_urls[0], image_size.width).
    assert re.split(r"[.\[]", error.param)[0] == name, (error.param, error.message)
    assert error.message


SIZES = st.one_of(
    st.builds(lambda w, h: {"size": f"{w}x{h}"}, st.integers(1, 5000), st.integers(1, 5000)),
    st.sampled_from(["1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "2:3", "5:4", "7:3"]).map(
        lambda r: {"aspect_ratio": r}
    ),
    st.sampled_from(["square_hd", "portrait_16_9", "landscape_4_3"]).map(
        lambda p: {"image_size": p}
    ),
    st.sampled_from(["shorts", "reels", "horizontal"]).map(lambda f: {"format": f}),
)


@PROPERTY_SETTINGS
@given(st.sampled_from([m for m in MODELS if m.prompt_field is not None]), SIZES)
def test_any_size_request_is_sized_or_rejected_naming_it(
    model: ModelSpec, ask: dict[str, Any]
) -> None:
    body: dict[str, Any] = {"prompt": "a lighthouse at dusk, detailed", **ask}
    limit = model.limits.references
    if limit is not None and limit.required:
        body[limit.field] = (
            "https://example.com/in.png"
            if limit.max == 1 and "string" in model.params[limit.field].types
            else ["https://example.com/in.png"]
        )
    try:
        plan = plan_openai(model, body)
    except InvalidParameter as error:
        assert error.param is not None and error.param.split(".")[0] in ask, (
            error.param,
            error.message,
        )
        return
    assert plan.width > 0 and plan.height > 0
    if "size" in ask and not plan.notices:
        # an exact answer: the size asked for is the size reported
        assert f"{plan.width}x{plan.height}" == ask["size"] or model.sizes.resolution_field
