"""TPC-H tables as Parquet files, generated once per scale factor by duckdb's dbgen and then reused.

Generation runs offline: the dbgen extension ships inside the `duckdb_extension_tpch` package and is loaded
from its file. A marker written after the last table makes an interrupted generation run again.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

TABLES = ("region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem")
ROW_GROUP_ROWS = 100_000
MARKER = "_COMPLETE"
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "data" / "tpch"


def extension_file() -> Path:
    """The dbgen extension binary shipped inside the `duckdb_extension_tpch` package."""
    import duckdb_extension_tpch

    found = sorted(Path(duckdb_extension_tpch.__file__).parent.rglob("*.duckdb_extension"))
    if not found:
        raise FileNotFoundError("duckdb_extension_tpch has no *.duckdb_extension file")
    return found[0]


def connect(database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A duckdb connection with the TPC-H extension loaded (for `dbgen` and `PRAGMA tpch`)."""
    con = duckdb.connect(database, config={"allow_unsigned_extensions": "true"})
    con.execute("SET enable_progress_bar = false")
    con.execute(f"LOAD '{extension_file()}'")
    return con


def folder(root: Path, sf: float) -> Path:
    """Where the tables of scale factor `sf` live: `root/sf{sf}`."""
    return Path(root) / f"sf{sf:g}"


def table_path(where: Path, table: str) -> Path:
    return where / f"{table}.parquet"


def _settings(sf: float, row_group_rows: int) -> str:
    return f"sf={sf:g} row_group_rows={row_group_rows}\n"


def generate(root: Path, sf: float, row_group_rows: int = ROW_GROUP_ROWS) -> Path:
    """Write the 8 tables of scale factor `sf` under `root` unless they are there already, made with the
    same settings; returns their folder. Smaller row groups make more chunks (each row group is one at most)."""
    where, settings = folder(root, sf), _settings(sf, row_group_rows)
    marker = where / MARKER
    if marker.exists() and marker.read_text() == settings:
        return where
    marker.unlink(missing_ok=True)
    where.mkdir(parents=True, exist_ok=True)
    # past SF 1 the tables are generated into a database file, so memory is not what bounds the scale
    database = where / "dbgen.duckdb"
    database.unlink(missing_ok=True)
    con = connect(str(database) if sf > 1 else ":memory:")
    con.execute(f"CALL dbgen(sf={sf})")
    for table in TABLES:
        target = table_path(where, table)
        con.execute(f"COPY {table} TO '{target}' (FORMAT parquet, ROW_GROUP_SIZE {row_group_rows})")
    con.close()
    database.unlink(missing_ok=True)
    marker.write_text(settings)
    return where


def float64_copy(where: Path) -> Path:
    """The same tables with every DECIMAL column stored as DOUBLE, beside them (`sf1` → `sf1-float64`), made
    once: what the benchmark compares decimal input against."""
    target = where.with_name(where.name + "-float64")
    marker = target / MARKER
    if marker.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    for table in TABLES:
        source = table_path(where, table)
        columns = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{source}')").fetchall()
        select = ", ".join(f"CAST({name} AS DOUBLE) AS {name}" if kind.startswith("DECIMAL") else name
                           for name, kind, *_ in columns)
        con.execute(f"COPY (SELECT {select} FROM read_parquet('{source}')) TO '{table_path(target, table)}' "
                    f"(FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_ROWS})")
    con.close()
    marker.write_text("float64\n")
    return target
