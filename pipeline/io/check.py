"""Check every input file before any task runs: a footer that cannot be read (empty, truncated, not
Parquet) or a schema that disagrees with the other files is named, file by file, up front."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.io.storage import reason

Problem = tuple[str, str]  # file, what is wrong with it
Resolve = Callable[[str], tuple[pafs.FileSystem, str]]  # a file's URL → its filesystem and path in it
REMOTE_READERS = 16  # footers fetched at once from object storage, where each costs a round trip


def check_files(files: Sequence[str], format: str, resolve: Resolve | None = None
                ) -> tuple[list[str], list[Problem]]:
    """(readable files that agree on a schema, problems). The schema most files share is the reference.
    CSV has no footer to check: its files are checked as they are read. `resolve` is given for files on
    object storage: their footers are read through it, several at once (the time is network latency)."""
    if format != "parquet":
        return list(files), []
    schemas: dict[str, pa.Schema] = {}
    problems: list[Problem] = []
    if resolve is None:
        results = [_read_schema(path, None) for path in files]
    else:
        with ThreadPoolExecutor(min(REMOTE_READERS, max(1, len(files)))) as pool:
            results = list(pool.map(lambda path: _read_schema(path, resolve), files))
    for path, result in zip(files, results):
        if isinstance(result, pa.Schema):
            schemas[path] = result
        else:
            problems.append((path, result))
    if not schemas:
        return [], problems
    votes = Counter(_shape(s) for s in schemas.values())
    reference_path = next(p for p, s in schemas.items() if _shape(s) == votes.most_common(1)[0][0])
    reference = schemas[reference_path]
    good = []
    for path, schema in schemas.items():
        conflict = _conflict(schema, reference, reference_path)
        if conflict:
            problems.append((path, conflict))
        else:
            good.append(path)
    return good, sorted(problems, key=lambda p: list(files).index(p[0]))


def _read_schema(path: str, resolve: Resolve | None) -> pa.Schema | str:
    """The file's schema, or why it cannot be read."""
    try:
        if resolve is None:
            return pq.read_schema(path).remove_metadata()
        fs, inner = resolve(path)
        return pq.read_schema(inner, filesystem=fs).remove_metadata()
    except (pa.ArrowException, OSError) as exc:
        return _reason(exc)


def _shape(schema: pa.Schema) -> tuple:
    return tuple((f.name, str(f.type)) for f in schema)


def _conflict(schema: pa.Schema, reference: pa.Schema, reference_path: str) -> str:
    names, expected = set(schema.names), set(reference.names)
    if names != expected:
        missing, extra = sorted(expected - names), sorted(names - expected)
        parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + (
            [f"unexpected column(s) {', '.join(extra)}"] if extra else []
        )
        return f"schema differs from {reference_path}: {'; '.join(parts)}"
    for field in schema:
        want = reference.field(field.name).type
        if field.type != want:
            return f"field '{field.name}' is {field.type} here but {want} in {reference_path}"
    return ""


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0]
    if "size is 0 bytes" in text:
        return "empty file (0 bytes)"
    if "magic bytes not found" in text or "smaller than the minimum file footer" in text:
        return "not a Parquet file, or truncated (no Parquet footer)"
    return reason(exc) if "AWS Error" in str(exc) else text  # object storage: network, credentials, ...
