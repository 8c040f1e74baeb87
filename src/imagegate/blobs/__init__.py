"""Where image bytes live: never in the database."""

from imagegate.blobs.base import BlobNotFound, BlobStore
from imagegate.blobs.local import LocalBlobStore

__all__ = ["BlobNotFound", "BlobStore", "LocalBlobStore"]
