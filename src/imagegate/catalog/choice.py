"""Which model a request gets when it names none: tier presets and use-case advice."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from imagegate.catalog import _yaml


class UseCase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    models: list[str] = Field(description="Recommended models, best first.")
    region: str | None = Field(default=None, description="Only models that can run here.")
    source: str


class Choices(BaseModel):
    """``choice.yaml``: tier presets (draft / fine / photo) and use-case recommendations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: dict[str, str] = Field(default_factory=dict)
    actions: dict[str, str] = Field(default_factory=dict)
    use_cases: dict[str, UseCase] = Field(default_factory=dict)
    source: str = ""

    def slugs(self) -> list[str]:
        names = [*self.tiers.values(), *self.actions.values()]
        for use_case in self.use_cases.values():
            names.extend(use_case.models)
        return names


def load_choices(text: str) -> Choices:
    return Choices.model_validate(_yaml.load(text))
