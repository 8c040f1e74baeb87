"""Provider adapters: one narrow interface, one module per upstream."""

from imagegate.providers.base import (
    GeneratedImage,
    InputImage,
    Provider,
    ProviderRequest,
    ProviderResult,
)
from imagegate.providers.fake import FakeProvider

__all__ = [
    "FakeProvider",
    "GeneratedImage",
    "InputImage",
    "Provider",
    "ProviderRequest",
    "ProviderResult",
]
