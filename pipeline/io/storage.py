"""Where input files live: a local path, or a URL on object storage, as `(pyarrow.fs.FileSystem, path in it)`.

`s3://` goes through `pyarrow.fs.S3FileSystem`: it is what the Parquet and CSV readers use natively (ranged
reads and pre-buffering in C++, no Python in the I/O path), so reading from S3 is about as fast as the network
allows. Every other scheme (`memory://`, `gs://`, `abfs://`, ...) goes through fsspec, wrapped in a
`pyarrow.fs.PyFileSystem` so the same readers use it. Local paths keep `os.path` semantics and globs.

Sources hold the URL and its `storage_options`, never a live filesystem: they travel to worker processes
by cloudpickle, and each process builds the filesystem on first use and keeps it (`_CACHE`), per scheme
and options. The endpoint in `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` is honoured here, as pyarrow
itself does not read it; credentials, region and profile are left to the AWS SDK, which reads the usual
variables and config files.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from pipeline.errors import ConfigError

LOCAL = pafs.LocalFileSystem()
S3_SCHEMES = ("s3", "s3a")
GLOB_CHARS = "*?["
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_CACHE: dict[str, pafs.FileSystem] = {}
_CACHE_LOCK = threading.Lock()

# storage_options for s3 → S3FileSystem keyword. Several spellings are accepted, as other readers use them.
_S3_ALIASES = {
    "endpoint_url": "endpoint", "endpoint": "endpoint", "endpoint_override": "endpoint",
    "key": "access_key", "access_key": "access_key", "aws_access_key_id": "access_key",
    "secret": "secret_key", "secret_key": "secret_key", "aws_secret_access_key": "secret_key",
    "token": "session_token", "session_token": "session_token", "aws_session_token": "session_token",
    "region": "region", "region_name": "region",
    "anon": "anonymous", "anonymous": "anonymous",
    "max_attempts": "max_attempts", "client_kwargs": "client_kwargs",
}
_S3_PASSED = ("role_arn", "session_name", "external_id", "load_frequency", "request_timeout", "connect_timeout",
              "scheme", "proxy_options", "allow_delayed_open", "force_virtual_addressing", "tls_ca_file_path",
              "background_writes", "default_metadata")
_AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
            "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


def is_local(path: str) -> bool:
    """A plain path or a `file://` URL: read with os.path semantics and globs, as always."""
    return "://" not in path or path[:7].lower() == "file://"


def scheme_of(path: str) -> str | None:
    """The URL scheme, lower case; None for a local path."""
    match = _SCHEME.match(path)
    return None if is_local(path) or match is None else match.group(1).lower()


def has_glob(path: str) -> bool:
    return any(ch in path for ch in GLOB_CHARS)


def resolve(path: str, storage_options: Mapping[str, Any] | None = None,
            where: str = "source") -> tuple[pafs.FileSystem, str]:
    """The filesystem `path` lives on and the path inside it. `where` names the config section in errors."""
    if is_local(path):
        return LOCAL, path[7:] if path[:7].lower() == "file://" else path
    scheme = scheme_of(path)
    if scheme is None:
        raise ConfigError(f"{where}.path: {path}: not a URL this reader understands (expected scheme://...)")
    options = dict(storage_options or {})
    if scheme in S3_SCHEMES:
        return _s3(options, where), _s3_path(path)
    return _fsspec(path, scheme, options, where)


def to_url(base: str, inner: str) -> str:
    """The path or URL, in the form `base` is written, of `inner`, a path on the filesystem of `base`."""
    if is_local(base):
        return inner
    return f"{base.split('://', 1)[0]}://{inner.lstrip('/')}"


def list_files(path: str, storage_options: Mapping[str, Any] | None = None, where: str = "source") -> list[str]:
    """The data files at a URL, as URLs: an object, every object under a prefix (hidden and underscore
    names skipped, as for a local folder), or those matching a glob. Any problem is one ConfigError."""
    fs, inner = resolve(path, storage_options, where)
    try:
        if has_glob(inner):
            found = _glob(fs, inner)
        else:
            info = fs.get_file_info(inner)
            if info.type == pafs.FileType.NotFound:
                raise ConfigError(f"{where}.path: {path}: {_why_missing(fs, inner, path)}")
            found = [inner] if info.type == pafs.FileType.File else _walk(fs, inner)
            if info.type == pafs.FileType.Directory and scheme_of(path) in S3_SCHEMES:
                _refuse_uncommitted(fs, inner, path, where)
    except OSError as exc:
        raise ConfigError(f"{where}.path: {path}: {reason(exc)}") from None
    if not found:
        raise ConfigError(f"{where}.path: no input files match {path}")
    return [to_url(path, f) for f in sorted(found)]


def _refuse_uncommitted(fs: pafs.FileSystem, inner: str, url: str, where: str) -> None:
    """A prefix with no `_SUCCESS` and an output lock beside it is an output being written, or left by a killed
    run (its parts are not an output): refused, rather than read as a plain listing."""
    from pipeline.io.object_lock import lock_key

    if (fs.get_file_info(f"{inner.rstrip('/')}/_SUCCESS").type == pafs.FileType.NotFound
            and fs.get_file_info(lock_key(url)).type == pafs.FileType.File):
        raise ConfigError(f"{where}.path: {url}: an output not committed (no _SUCCESS; a run is writing it, or "
                          "was killed: its next run cleans up)")


def is_folder(fs: pafs.FileSystem, inner: str) -> bool:
    """Whether `inner` is a folder (a prefix, on object storage), so hive partitions are found below it."""
    return not has_glob(inner) and fs.get_file_info(inner).type == pafs.FileType.Directory


def file_identity(fs: pafs.FileSystem, inner: str, url: str) -> tuple[int | None, int | None]:
    """(size, modification time in ns) of a file, to tell a rewritten file from the one read before."""
    if fs is LOCAL:
        stat = os.stat(inner)
        return stat.st_size, stat.st_mtime_ns
    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{url}: no such object")
    return info.size, info.mtime_ns


def reason(exc: BaseException) -> str:
    """Why object storage refused, in one line: network, credentials and region told apart. Any other
    error's text is returned as it is."""
    code = re.search(r"AWS Error (\w+)(?: \(HTTP status (\d+)\))?", str(exc))
    if code is None:
        return str(exc)
    text = " ".join(str(exc).split())
    name, status = code.group(1), code.group(2)
    detail = text.split("Details: ", 1)[-1] if "Details: " in text else text
    if name == "NETWORK_CONNECTION":
        return f"cannot reach the storage endpoint: {detail}"
    if status == "403" or name in ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH",
                                   "INVALID_CLIENT_TOKEN_ID", "EXPIRED_TOKEN", "MISSING_AUTHENTICATION_TOKEN"):
        return (f"access denied ({name}{' ' + status if status else ''}): check the credentials "
                "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or storage_options key and secret)")
    if status == "301":
        return "the bucket is in another region: set AWS_REGION or storage_options region"
    if name == "NO_SUCH_BUCKET":
        return "no such bucket"
    return text


def _why_missing(fs: pafs.FileSystem, inner: str, url: str) -> str:
    bucket = inner.split("/", 1)[0]
    if scheme_of(url) in S3_SCHEMES and fs.get_file_info(bucket).type == pafs.FileType.NotFound:
        return f"no such bucket {bucket!r}"
    return "no such object, and no objects under that prefix"


def _walk(fs: pafs.FileSystem, root: str) -> list[str]:
    """Files below `root`, skipping hidden and underscore names (`_SUCCESS`, `_temporary/`, `.staging`)."""
    root = root.rstrip("/")
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    return [i.path for i in infos if i.type == pafs.FileType.File and not _hidden(i.path[len(root):])]


def _glob(fs: pafs.FileSystem, pattern: str) -> list[str]:
    """Files matching a glob, segment by segment as `glob.glob` does (`*` stays within a folder, `**` spans
    folders), listed from the longest prefix without a wildcard."""
    parts = pattern.split("/")
    fixed = next(i for i, part in enumerate(parts) if has_glob(part))
    root = "/".join(parts[:fixed])
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    wanted = parts[fixed:]
    return [i.path for i in infos if i.type == pafs.FileType.File
            and _match(wanted, i.path[len(root):].strip("/").split("/"))]


def _match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    if not parts or (_hidden(parts[0]) and not _hidden(pattern[0])):
        return False
    return fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(pattern[1:], parts[1:])


def _hidden(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)


def _s3_path(url: str) -> str:
    """`s3://bucket/key/` → `bucket/key`, the form S3FileSystem takes."""
    return url.split("://", 1)[1].strip("/")


def _s3(options: dict[str, Any], where: str) -> pafs.FileSystem:
    kwargs = s3_options(options, where)
    environment = {name: os.environ.get(name) for name in _AWS_ENV}  # the SDK reads these when built
    key = json.dumps(["s3", kwargs, environment], sort_keys=True, default=repr)
    return _cached(key, lambda: _build_s3(kwargs, where))


MAX_ATTEMPTS = 5  # per request, unless storage_options say otherwise: the same for pyarrow and botocore


def _build_s3(kwargs: dict[str, Any], where: str) -> pafs.FileSystem:
    """Requests refused with 5xx or cut off are retried (standard strategy, MAX_ATTEMPTS unless given), as the
    commit's botocore client does (`s3_client`)."""
    kwargs = dict(kwargs)
    attempts = kwargs.pop("max_attempts", None) or MAX_ATTEMPTS
    try:
        kwargs["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=int(attempts))
        return pafs.S3FileSystem(**kwargs)
    except (TypeError, ValueError, OSError) as exc:
        raise ConfigError(f"{where}.storage_options: {reason(exc)}") from None


def s3_options(options: Mapping[str, Any], where: str = "source") -> dict[str, Any]:
    """S3FileSystem keywords from the environment's endpoint and the user's `storage_options` (which win)."""
    kwargs: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs.update(_endpoint(endpoint, "AWS_ENDPOINT_URL_S3" if os.environ.get("AWS_ENDPOINT_URL_S3")
                                else "AWS_ENDPOINT_URL"))
    given = dict(options)
    given.update(_client_kwargs(given.pop("client_kwargs", None), where))
    for name, value in given.items():
        target = _S3_ALIASES.get(name, name if name in _S3_PASSED else None)
        if target is None:
            known = ", ".join(sorted({*_S3_ALIASES, *_S3_PASSED}))
            raise ConfigError(f"{where}.storage_options: unknown key {name!r} for s3 (expected one of: {known})")
        if target == "endpoint":
            kwargs.update(_endpoint(value, f"{where}.storage_options: {name}"))
        else:
            kwargs[target] = value
    if "scheme" in given:
        kwargs["scheme"] = given["scheme"]
    return kwargs


def _client_kwargs(value: Any, where: str) -> dict[str, Any]:
    """`client_kwargs = {endpoint_url, region_name}`, as written for boto-based readers."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or set(value) - {"endpoint_url", "region_name"}:
        raise ConfigError(f"{where}.storage_options: client_kwargs may hold endpoint_url and region_name only")
    return dict(value)


def _endpoint(url: Any, key: str) -> dict[str, str]:
    """`http://host:9000` → endpoint_override `host:9000` and scheme `http`; a bare `host:port` keeps https.
    `key` names where the URL was given, for the error."""
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{key}: expected a URL such as http://host:9000, got {url!r}")
    if "://" not in url:
        return {"endpoint_override": url.rstrip("/")}
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{key}: expected http://host[:port] or https://host[:port], got {url!r}")
    return {"endpoint_override": parts.netloc + parts.path.rstrip("/"), "scheme": parts.scheme}


def _fsspec(url: str, scheme: str, options: dict[str, Any], where: str) -> tuple[pafs.FileSystem, str]:
    """Any other scheme, through fsspec and the scheme's own package, wrapped for pyarrow's readers."""
    try:
        import fsspec

        cls = fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{where}.path: {url}: reading {scheme}:// needs fsspec and the package for "
                          f"{scheme} installed ({' '.join(str(exc).split())[:200]})") from None
    kwargs = {**cls._get_kwargs_from_urls(url), **options}
    key = json.dumps(["fsspec", scheme, kwargs], sort_keys=True, default=repr)
    return _cached(key, lambda: _build_fsspec(cls, kwargs, where)), cls._strip_protocol(url)


def _build_fsspec(cls: type, kwargs: dict[str, Any], where: str) -> pafs.FileSystem:
    try:
        return pafs.PyFileSystem(pafs.FSSpecHandler(cls(**kwargs)))
    except (TypeError, ValueError, OSError, ImportError) as exc:
        raise ConfigError(f"{where}.storage_options: {' '.join(str(exc).split())}") from None


def _cached(key: str, build: Callable[[], pafs.FileSystem]) -> pafs.FileSystem:
    """One filesystem per scheme and options per process: its connections and credentials are reused."""
    with _CACHE_LOCK:
        fs = _CACHE.get(key)
    if fs is None:
        fs = build()
        with _CACHE_LOCK:
            fs = _CACHE.setdefault(key, fs)
    return fs


# ---- the run's scratch on object storage -------------------------------------------------------------------


class ObjectPath(str):
    """A scratch URL that carries its `storage_options`. Many scratch paths reach a worker as bare strings
    (a broadcast side's part list, a map file's name); this keeps the bucket's endpoint and credentials with
    them, through pickling too, so every process reaches the scratch the way the driver does."""

    storage_options: dict[str, Any]

    def __new__(cls, url: str, storage_options: Mapping[str, Any] | None = None) -> "ObjectPath":
        path = super().__new__(cls, url)
        path.storage_options = dict(storage_options or {})
        return path

    def __reduce__(self) -> tuple[Any, ...]:
        return ObjectPath, (str(self), self.storage_options)


def join(folder: str, *names: str) -> str:
    """`os.path.join` for a local folder (unchanged); for a URL, `/`-joined, keeping its storage_options."""
    if is_local(folder):
        return os.path.join(folder, *names)
    return ObjectPath("/".join([folder.rstrip("/"), *names]), getattr(folder, "storage_options", None))


def object_fs(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of a scratch URL, with the options it carries (else those of the environment)."""
    return resolve(path, getattr(path, "storage_options", None), "run.scratch")


def put(path: str, data: bytes | Any) -> int:
    """One object, written in one request when it closes: whole or absent, so no temporary name and rename."""
    fs, inner = object_fs(path)
    with fs.open_output_stream(inner) as out:
        out.write(data)
    return len(data)


def get(path: str) -> bytes:
    """A scratch file's bytes, local or an object."""
    if is_local(path):
        with open(path, "rb") as file:
            return file.read()
    fs, inner = object_fs(path)
    with fs.open_input_stream(inner) as source:
        return source.readall()


def exists(path: str) -> bool:
    """Whether an object is there (one HEAD)."""
    fs, inner = object_fs(path)
    return fs.get_file_info(inner).type == pafs.FileType.File


def remove_tree(path: str) -> None:
    """Every object under a scratch prefix, then the prefix; one already gone is no error."""
    fs, inner = object_fs(path)
    try:
        fs.delete_dir_contents(inner, missing_dir_ok=True)
        fs.delete_dir(inner)
    except FileNotFoundError:
        pass
