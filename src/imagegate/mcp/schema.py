"""The ``image`` tool's input and output schemas, generated from the catalog.

The tool's own fields (action, tier, model, sources, ``out``, ``mock``, ``format``) come
first; then the parameters of the models the tool picks by itself (the tier presets and
the default editor and upscaler), from the same description that feeds
``GET /v1/models/{slug}``. Any other model's parameters go in ``params`` or flat.
"""

from __future__ import annotations

import copy
from typing import Any

from imagegate.catalog import Catalog, ModelSpec
from imagegate.catalog.schema import json_schema
from imagegate.services.generation import FORMAT_PRESETS

ACTIONS = ("create", "edit", "upscale")
# Read by the tool itself; a model parameter of the same name goes in ``params``.
TOOL_FIELDS = frozenset(
    {
        "action",
        "prompt",
        "tier",
        "model",
        "image_url",
        "image_urls",
        "params",
        "out",
        "mock",
        "format",
        "idempotency_key",
    }
)
# API wrapper fields the tool does not offer: outputs are always stored, and webhooks
# are for servers, not agents.
REFUSED_FIELDS = frozenset({"sync_mode", "webhook_url", "reference_files", "mask_file"})
SOURCE_HELP = (
    "an https URL, a file id (file_…), a data URI, or (over stdio) a path relative to "
    "the working directory"
)


def default_models(catalog: Catalog) -> dict[str, str]:
    """``tier:draft`` / ``action:edit`` → model slug, as the catalog's choices say."""
    defaults = {f"tier:{tier}": slug for tier, slug in catalog.choices.tiers.items()}
    defaults |= {f"action:{action}": slug for action, slug in catalog.choices.actions.items()}
    return defaults


def _label(model: ModelSpec) -> str:
    return f"{model.slug} ({model.name})"


def _merged_params(models: list[ModelSpec]) -> dict[str, Any]:
    """The union of the models' parameters: one entry per name, with the models that take
    it; where they disagree on what is allowed, the types only (the API checks the rest)."""
    merged: dict[str, dict[str, Any]] = {}
    takers: dict[str, list[str]] = {}
    for model in models:
        properties = json_schema(model).get("properties", {})
        for name, schema in properties.items():
            if name in TOOL_FIELDS or name in REFUSED_FIELDS or name == model.prompt_field:
                continue
            takers.setdefault(name, []).append(model.slug)
            if name not in merged:
                merged[name] = copy.deepcopy(schema)
            elif merged[name] != schema:
                merged[name] = _loosened(merged[name], schema)
    for name, schema in merged.items():
        note = f"Taken by {', '.join(takers[name])}."
        schema["description"] = f"{schema.get('description', '').strip()} {note}".strip()
    return merged


def _types(schema: dict[str, Any]) -> set[str]:
    if "anyOf" in schema:
        return {t for option in schema["anyOf"] for t in _types(option)}
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind)
    return {kind} if isinstance(kind, str) else set()


DEPENDS = " Allowed values depend on the model."


def _loosened(first: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    kinds = sorted(_types(first) | _types(other))
    description = str(first.get("description", "")).removesuffix(DEPENDS)
    loose: dict[str, Any] = {"description": description + DEPENDS}
    if kinds:
        loose["type"] = kinds[0] if len(kinds) == 1 else kinds
    return loose


def input_schema(catalog: Catalog) -> dict[str, Any]:
    tiers = catalog.choices.tiers
    actions = catalog.choices.actions
    tier_help = "; ".join(
        f"{tier} → {_label(model)}"
        for tier, slug in tiers.items()
        if (model := catalog.resolve(slug)) is not None
    )
    action_help = ", ".join(f"{action} → {slug}" for action, slug in actions.items())
    properties: dict[str, Any] = {
        "action": {
            "type": "string",
            "enum": list(ACTIONS),
            "default": "create",
            "description": "create: a new image from a prompt; edit: change source image(s) "
            "as the prompt says; upscale: enlarge a source image.",
        },
        "prompt": {
            "type": "string",
            "description": "What to draw (create), or the instruction (edit).",
        },
        "tier": {
            "type": "string",
            "enum": list(tiers),
            "default": next(iter(tiers), None),
            "description": f"For create without a model: {tier_help}.",
        },
        "model": {
            "type": "string",
            "description": "A model slug or alias the workspace allows (read the "
            "imagegate://models resource or call image_models). Defaults: create → the "
            f"tier's model; {action_help}.",
        },
        "image_url": {
            "type": "string",
            "description": f"The source image for edit or upscale: {SOURCE_HELP}.",
        },
        "image_urls": {
            "type": "array",
            "items": {"type": "string"},
            "description": f"Several source images (edit): each {SOURCE_HELP}.",
        },
        "out": {
            "type": "string",
            "description": "Output filename or path relative to the working directory "
            "(stdio: written there, folders made; numbered when several images). Over "
            "HTTP the image is kept in the gateway's files under that name.",
        },
        "mock": {
            "type": "boolean",
            "default": False,
            "description": "A free placeholder image of the right size instead of a real "
            "generation.",
        },
        "format": {
            "type": "string",
            "enum": list(FORMAT_PRESETS),
            "description": "Size preset: shorts and reels are 9:16 portrait, horizontal "
            "16:9; mapped to each model's own size field.",
        },
        "idempotency_key": {
            "type": "string",
            "description": "Send the same key again to get the same job back, charged once.",
        },
        "params": {
            "type": "object",
            "description": "The chosen model's own parameters, as GET /v1/models/{slug} "
            "describes them (needed for a parameter named like a tool field, e.g. "
            "topaz_upscale_image's 'model').",
        },
    }
    models = [
        model
        for slug in dict.fromkeys([*tiers.values(), *actions.values()])
        if (model := catalog.resolve(slug)) is not None
    ]
    for name, schema in _merged_params(models).items():
        properties.setdefault(name, schema)
    return {
        "type": "object",
        "properties": properties,
        # Other models' parameters may be given flat too; the API names any it rejects.
        "additionalProperties": True,
    }


_IMAGE = {
    "type": "object",
    "properties": {
        "file_id": {"type": "string"},
        "uri": {"type": "string", "description": "imagegate://files/{id}, for resources/read."},
        "url": {"type": ["string", "null"], "description": "Signed HTTP link (expires)."},
        "url_expires_at": {"type": ["integer", "null"]},
        "width": {"type": ["integer", "null"]},
        "height": {"type": ["integer", "null"]},
        "content_type": {"type": "string"},
        "bytes": {"type": ["integer", "null"]},
        "name": {"type": "string", "description": "The output's name (from 'out')."},
        "path": {
            "type": ["string", "null"],
            "description": "Where it was saved, relative to the working directory (stdio).",
        },
    },
    "required": ["file_id", "uri", "width", "height", "content_type"],
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "job_id": {"type": "string"},
        "status": {"type": "string"},
        "action": {"type": "string", "enum": list(ACTIONS)},
        "model": {"type": "string"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "mock": {"type": "boolean"},
        "file_ids": {"type": "array", "items": {"type": "string"}},
        "images": {"type": "array", "items": _IMAGE},
        "estimated_credits": {"type": "number"},
        "charged_credits": {"type": ["number", "null"]},
        "notices": {"type": "array", "items": {"type": "string"}},
    },
    "required": [
        "job_id",
        "status",
        "model",
        "width",
        "height",
        "file_ids",
        "images",
        "estimated_credits",
        "charged_credits",
    ],
}

MODELS_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tiers": {"type": "object", "additionalProperties": {"type": "string"}},
        "actions": {"type": "object", "additionalProperties": {"type": "string"}},
        "default_model": {"type": ["string", "null"]},
        "models": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["tiers", "actions", "models"],
}
