"""The model catalog: data files describing every model, and what follows from them."""

from imagegate.catalog.loader import Catalog, load_catalog
from imagegate.catalog.spec import ModelSpec, ParamSpec, PriceSpec, SizeSpec

__all__ = ["Catalog", "ModelSpec", "ParamSpec", "PriceSpec", "SizeSpec", "load_catalog"]
