"""Quality stars from a recorded snapshot of a public text-to-image arena leaderboard.

The rule (also in docs/catalog.md): a model's stars follow how far its arena score
lies below the snapshot's best score. Within ``bands[0]`` points of the top: 5 stars;
within ``bands[1]``: 4; within ``bands[2]``: 3; within ``bands[3]``: 2; further: 1.
Models the leaderboard does not list get no stars (shown as ``null``).
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, field_validator

from imagegate.catalog import _yaml


class ArenaEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The model's name on the leaderboard.")
    score: int
    models: list[str] = Field(description="Catalog slugs or aliases this score stands for.")


class Arena(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    leaderboard: str
    source: str
    snapshot_date: dt.date
    note: str = ""
    bands: tuple[int, int, int, int]
    entries: list[ArenaEntry]

    @field_validator("bands")
    @classmethod
    def _increasing(cls, value: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        if list(value) != sorted(value) or value[0] < 0:
            raise ValueError("bands must be non-negative and increasing")
        return value

    @property
    def top(self) -> int:
        return max(entry.score for entry in self.entries)

    def stars_for(self, score: int) -> int:
        below = self.top - score
        for stars, band in zip((5, 4, 3, 2), self.bands, strict=True):
            if below <= band:
                return stars
        return 1

    def stars(self) -> dict[str, int]:
        """Stars by catalog name (slug or alias)."""
        result: dict[str, int] = {}
        for entry in self.entries:
            for name in entry.models:
                result[name] = self.stars_for(entry.score)
        return result

    def models(self) -> list[str]:
        return [name for entry in self.entries for name in entry.models]

    def entry_for(self, names: list[str]) -> ArenaEntry | None:
        """The leaderboard entry that rates a model known by any of ``names``."""
        wanted = set(names)
        return next((e for e in self.entries if wanted & set(e.models)), None)

    def quality(self, names: list[str]) -> dict[str, object]:
        """What the API says of a model's quality: its stars and where they come from, or
        ``not rated`` when the leaderboard does not list it."""
        entry = self.entry_for(names)
        return {
            "stars": self.stars_for(entry.score) if entry is not None else None,
            "label": f"{self.stars_for(entry.score)} of 5" if entry is not None else "not rated",
            "leaderboard_name": entry.name if entry is not None else None,
            "score": entry.score if entry is not None else None,
            "leaderboard": self.leaderboard,
            "source": self.source,
            "snapshot_date": self.snapshot_date.isoformat(),
        }


def load_arena(text: str) -> Arena:
    return Arena.model_validate(_yaml.load(text))
