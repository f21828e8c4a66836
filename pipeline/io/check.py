"""Check every input file before any task runs: a footer that cannot be read (empty, truncated, not
Parquet) or a schema that disagrees with the other files is named, file by file, up front."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

Problem = tuple[str, str]  # file, what is wrong with it


def check_files(files: Sequence[str], format: str) -> tuple[list[str], list[Problem]]:
    """(readable files that agree on a schema, problems). The schema most files share is the reference.
    CSV has no footer to check: its files are checked as they are read."""
    if format != "parquet":
        return list(files), []
    schemas: dict[str, pa.Schema] = {}
    problems: list[Problem] = []
    for path in files:
        try:
            schemas[path] = pq.read_schema(path).remove_metadata()
        except (pa.ArrowException, OSError) as exc:
            problems.append((path, _reason(exc)))
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
    return text
