"""The TPC-H queries as each peer's users write them, for the benchmark's side-by-side runs.

Every module here exposes `QUERIES: dict[int, Callable[[str], pandas.DataFrame]]`: query number → a function
of the folder holding `{table}.parquet` that returns the answer with the SQL's output columns, in its order,
sorted by its ORDER BY and cut to its LIMIT. Whatever the peer needs running first (a Dask client, Ray) the
caller starts; a query only builds and computes.
"""
