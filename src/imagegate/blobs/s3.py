"""Blobs in S3-compatible object storage (AWS S3, MinIO, R2, …) through aiobotocore.

Uploads of unknown length go up as a multipart upload, one part in memory at a time;
reads come back as the response body's chunks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from imagegate.blobs.base import CHUNK_SIZE, BlobNotFound

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

# S3's smallest part is 5 MiB; 8 MiB keeps part counts low for the largest images.
PART_SIZE = 8 * 1024 * 1024
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = PART_SIZE,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "config": AioConfig(
                signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"}
            ),
        }
        self._stack: AsyncExitStack | None = None
        self._client: S3Client | None = None
        self._lock = asyncio.Lock()

    def object_key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    async def client(self) -> S3Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    stack = AsyncExitStack()
                    creator = get_session().create_client("s3", **self._client_args)
                    self._client = await stack.enter_async_context(creator)
                    self._stack = stack
        return self._client

    async def create_bucket(self) -> None:
        """Create the bucket if it does not exist (for first-time set-up and tests)."""
        client = await self.client()
        try:
            await client.head_bucket(Bucket=self.bucket)
        except ClientError:
            await client.create_bucket(Bucket=self.bucket)

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        client = await self.client()
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).digest())
        await client.put_object(
            Bucket=self.bucket,
            Key=self.object_key(key),
            Body=data,
            ContentType=content_type,
            **self._checksum(client, digest),
        )
        return digest.hex()

    @staticmethod
    def _checksum(client: S3Client, digest: bytes) -> dict[str, Any]:
        """The upload's SHA-256 for the store to check (``BadDigest`` when the bytes that
        arrived differ) and keep; the SDK then computes no checksum of its own. None where
        the operator turned the SDK's checksums off for a store that refuses them
        (``AWS_REQUEST_CHECKSUM_CALCULATION=when_required``)."""
        calculation = getattr(client.meta.config, "request_checksum_calculation", None)
        if calculation == "when_required":
            return {}
        return {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": base64.b64encode(digest).decode()}

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str
    ) -> tuple[int, str]:
        client = await self.client()
        object_key = self.object_key(key)
        buffer = bytearray()
        written = 0
        digest = hashlib.sha256()  # fed each part (or the whole) before it goes up
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                buffer += chunk
                written += len(chunk)
                if len(buffer) >= self.part_size:
                    if upload_id is None:
                        started = await client.create_multipart_upload(
                            Bucket=self.bucket, Key=object_key, ContentType=content_type
                        )
                        upload_id = started["UploadId"]
                    await asyncio.to_thread(digest.update, buffer)
                    parts.append(
                        await self._part(client, object_key, upload_id, len(parts) + 1, buffer)
                    )
                    buffer = bytearray()
            await asyncio.to_thread(digest.update, buffer)
            if upload_id is None:
                await client.put_object(
                    Bucket=self.bucket,
                    Key=object_key,
                    Body=bytes(buffer),
                    ContentType=content_type,
                    **self._checksum(client, digest.digest()),
                )
                return written, digest.hexdigest()
            if buffer:
                parts.append(
                    await self._part(client, object_key, upload_id, len(parts) + 1, buffer)
                )
            await client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=object_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )
        except BaseException:
            if upload_id is not None:
                await client.abort_multipart_upload(
                    Bucket=self.bucket, Key=object_key, UploadId=upload_id
                )
            raise
        return written, digest.hexdigest()

    async def _part(
        self, client: S3Client, object_key: str, upload_id: str, number: int, data: bytearray
    ) -> dict[str, Any]:
        response = await client.upload_part(
            Bucket=self.bucket,
            Key=object_key,
            UploadId=upload_id,
            PartNumber=number,
            Body=bytes(data),
        )
        return {"ETag": response["ETag"], "PartNumber": number}

    async def open(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        client = await self.client()
        try:
            response = await client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise BlobNotFound(key) from None
            raise
        return self._chunks(response["Body"], chunk_size)

    @staticmethod
    async def _chunks(body: Any, chunk_size: int) -> AsyncIterator[bytes]:
        try:
            async for chunk in body.iter_chunks(chunk_size):
                yield chunk
        finally:
            body.close()

    async def stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        async for chunk in await self.open(key, chunk_size):
            yield chunk

    async def read(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in await self.open(key)])

    async def delete(self, key: str) -> None:
        client = await self.client()
        await client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        client = await self.client()
        return await client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.object_key(key)},
            ExpiresIn=expires_in,
        )

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = None
        self._client = None
