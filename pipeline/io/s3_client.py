"""Conditional writes on S3, through botocore: the one thing pyarrow's S3FileSystem cannot do.

pyarrow (checked with 26.0) passes only a few known headers of `open_output_stream(metadata=...)`; an
`If-None-Match: *` given there is dropped, and a second write of the same key succeeds. So the commit
marker and the lock object are written here, with `IfNoneMatch="*"` (create only if absent) or `IfMatch=<etag>`
(replace only what was read), both honoured by S3 and S3-compatible servers; the data itself is still
written by pyarrow. boto3 is imported only when an output is on S3 (it comes with the `dev` extra, and
any AWS tooling); without it, writing to `s3://` stops with one line saying so.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.errors import ConfigError, SinkError
from pipeline.io import storage

_CLIENTS: dict[str, Any] = {}
_LOCK = threading.Lock()


class PreconditionFailed(SinkError):
    """The object was created or changed by someone else since we looked (HTTP 412, or 409 on a race)."""


def client(storage_options: Mapping[str, Any] | None) -> Any:
    """A botocore S3 client built from the same settings as the reader's filesystem, one per process."""
    kwargs = storage.s3_options(storage_options or {}, "sink")
    key = repr((os.getpid(), sorted(kwargs.items(), key=str)))
    with _LOCK:
        found = _CLIENTS.get(key)
    if found is None:
        found = _build(kwargs)
        with _LOCK:
            found = _CLIENTS.setdefault(key, found)
    return found


def _build(kwargs: dict[str, Any]) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ConfigError("sink.path: committing to s3:// needs boto3 (pip install boto3)") from None
    endpoint = kwargs.get("endpoint_override")
    attempts = int(kwargs.get("max_attempts") or storage.MAX_ATTEMPTS)
    config: dict[str, Any] = {"retries": {"max_attempts": attempts, "mode": "standard"}}
    if kwargs.get("anonymous"):
        from botocore import UNSIGNED

        config["signature_version"] = UNSIGNED
    return boto3.session.Session().client(
        "s3",
        endpoint_url=f"{kwargs.get('scheme', 'https')}://{endpoint}" if endpoint else None,
        aws_access_key_id=kwargs.get("access_key"),
        aws_secret_access_key=kwargs.get("secret_key"),
        aws_session_token=kwargs.get("session_token"),
        region_name=kwargs.get("region"),
        config=Config(**config),
    )


def split(inner: str) -> tuple[str, str]:
    """`bucket/key/...` → (bucket, key)."""
    bucket, _, key = inner.partition("/")
    return bucket, key


def get(s3: Any, inner: str) -> tuple[bytes, str] | None:
    """(body, etag) of an object, None when absent: the etag is of exactly the body returned."""
    bucket, key = split(inner)
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.NoSuchKey:
        return None
    return answer["Body"].read(), answer["ETag"]


def put(s3: Any, inner: str, body: bytes, etag: str | None) -> str:
    """Create `inner` if `etag` is None (only if absent), else replace it only if it still has `etag`.
    Returns the new etag; PreconditionFailed if someone else got there first.

    A PUT that took effect but whose answer was lost is retried by the client, and the retry fails its condition
    on the object it wrote itself: an object holding exactly `body` (its ETag is the body's MD5) is ours."""
    from botocore.exceptions import ClientError

    bucket, key = split(inner)
    condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
    try:
        return s3.put_object(Bucket=bucket, Key=key, Body=body, **condition)["ETag"]
    except ClientError as exc:
        if _status(exc) in (409, 412) or _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
            mine = _etag_if_holding(s3, bucket, key, body)
            if mine is not None:
                return mine
            raise PreconditionFailed(f"{inner}: {'already exists' if etag is None else 'changed meanwhile'}") from None
        raise SinkError(f"{inner}: {_code(exc)}: {exc}") from None


def _etag_if_holding(s3: Any, bucket: str, key: str, body: bytes) -> str | None:
    """The object's etag if it holds exactly `body` (single-part ETag = MD5), else None."""
    from botocore.exceptions import ClientError

    try:
        found = s3.head_object(Bucket=bucket, Key=key)["ETag"]
    except ClientError:
        return None
    return found if found.strip('"') == hashlib.md5(body).hexdigest() else None


def delete(s3: Any, inner: str, etag: str | None = None) -> bool:
    """Remove `inner` (only if it still has `etag`, when given); False if it had changed."""
    from botocore.exceptions import ClientError

    bucket, key = split(inner)
    try:
        s3.delete_object(Bucket=bucket, Key=key, **({"IfMatch": etag} if etag else {}))
        return True
    except ClientError as exc:
        if _status(exc) in (404, 409, 412) or _code(exc) in ("PreconditionFailed", "NoSuchKey"):
            return False
        raise SinkError(f"{inner}: {_code(exc)}: {exc}") from None


def abort_uploads(s3: Any, inner: str, owned: Callable[[str], bool]) -> list[str]:
    """Abort the unfinished multipart uploads under the prefix `inner` whose key (relative to it) `owned`
    picks: a writer killed mid-upload leaves one, invisible to listings and billed until aborted. Returns
    the keys aborted."""
    bucket, prefix = split(inner.rstrip("/") + "/")
    aborted = []
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            relative = upload["Key"][len(prefix):]
            if owned(relative):
                s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted.append(relative)
    return aborted


def _status(exc: Any) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
