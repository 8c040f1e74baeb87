"""Where file bytes live: never in the database."""

from __future__ import annotations

from imagegate.blobs.base import BlobNotFound, BlobStore
from imagegate.blobs.local import LocalBlobStore
from imagegate.config import Settings

__all__ = ["BlobNotFound", "BlobStore", "LocalBlobStore", "blob_store"]


def blob_store(settings: Settings) -> BlobStore:
    """The store the settings choose: the data dir (default) or an S3-compatible bucket."""
    if settings.blob_backend == "s3":
        from imagegate.blobs.s3 import S3BlobStore

        assert settings.s3_bucket is not None
        secret = settings.s3_secret_access_key
        return S3BlobStore(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
        )
    return LocalBlobStore(settings.blob_dir)
