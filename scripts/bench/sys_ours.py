"""This framework: the taxi job through the Python API, on each engine.

Local engines start their workers inside `run()`, so their start-up is part of the job time, as for
the hand-written Pool. Dask and Ray get their cluster started first (the "startup" phase), as their
DataFrame anchors do, so job times compare like with like on the same cluster.
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from bench import job
from bench.spec import RunSpec
from bench.timer import Timer


def taxi_pipeline():  # noqa: ANN201 - pipeline.Pipeline, imported lazily
    """clean → transform → aggregate, the stages as plain pandas functions."""
    from pipeline import Pipeline
    from stages.analyze import aggregate

    return Pipeline().then(job.clean).then(job.transform).then(aggregate, by=job.KEYS, aggs=job.AGGS)


def taxi_pipeline_polars(lazy: bool = False):  # noqa: ANN201 - pipeline.Pipeline, imported lazily
    """The same job with Polars stages (`bench.polars_stages`), eager or lazy."""
    from bench import polars_stages as ps
    from pipeline import Pipeline
    from stages.analyze import aggregate

    clean, transform = (ps.clean_lazy, ps.transform_lazy) if lazy else (ps.clean, ps.transform)
    return Pipeline().then(clean).then(transform).then(aggregate, by=job.KEYS, aggs=job.AGGS)


def _run(spec: RunSpec, t: Timer, engine: object, pipeline: object = None) -> pd.DataFrame:
    from pipeline.io import FileSource

    sink = spec.out("result.parquet")
    pipeline = pipeline or taxi_pipeline()
    with t.phase("job"):
        pipeline.run(FileSource(spec.data, columns=job.COLUMNS), sink, engine=engine, workers=spec.workers,
                     mode="overwrite")
    return pd.read_parquet(sink)


def local(engine: str):  # noqa: ANN201 - a system function
    """sync, threads, processes, joblib: the engine is named, built and closed by `run()`."""

    def system(spec: RunSpec, t: Timer) -> pd.DataFrame:
        with t.phase("import"):
            import pipeline.pipeline  # noqa: F401 - `import pipeline` alone is lazy: the modules a run uses
            import stages.analyze  # noqa: F401
        return _run(spec, t, engine)

    system.__name__ = f"ours_{engine}"
    return system


def polars_stages(how: str):  # noqa: ANN201 - a system function
    """The job with Polars stages, `how` = "ENGINE" (eager stages) or "ENGINE-lazy": compared with Polars' own
    lazy engine. Polars and Arrow release the GIL, so the threads engine runs them in parallel without
    starting worker processes (which a driver that imported Polars can only start from the forkserver)."""
    engine, _, mode = how.partition("-")
    lazy = mode == "lazy"

    def system(spec: RunSpec, t: Timer) -> pd.DataFrame:
        with t.phase("import"):
            os.environ.setdefault("POLARS_MAX_THREADS", str(spec.workers))  # read once, at import
            import pipeline.pipeline  # noqa: F401 - `import pipeline` alone is lazy: the modules a run uses
            import stages.analyze  # noqa: F401
            from bench import polars_stages  # noqa: F401 - imports polars, as the user's module would
        return _run(spec, t, engine, taxi_pipeline_polars(lazy))

    system.__name__ = f"ours_polars_{'lazy' if lazy else 'eager'}_{engine}"
    return system


def start_dask(workers: int):  # noqa: ANN201 - (cluster, client)
    """The one LocalCluster shape every Dask run uses: loopback, one single-threaded worker per core."""
    import distributed

    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    return cluster, distributed.Client(cluster)


def start_ray(workers: int) -> None:
    """A private Ray on loopback with `workers` CPUs and no dashboard."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1",
             logging_level=logging.WARNING)


def dask(spec: RunSpec, t: Timer) -> pd.DataFrame:
    with t.phase("import"):
        from pipeline.engines import get_engine
    with t.phase("startup"):
        cluster, client = start_dask(spec.workers)
    try:
        return _run(spec, t, get_engine("dask", workers=spec.workers, client=client))
    finally:
        with t.phase("teardown"):
            client.close()
            cluster.close()


def ray(spec: RunSpec, t: Timer) -> pd.DataFrame:
    with t.phase("import"):
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        import ray as ray_module

        import pipeline.engines.ray  # noqa: F401
    with t.phase("startup"):
        start_ray(spec.workers)
    try:
        return _run(spec, t, "ray")  # the engine finds Ray initialised and leaves it running
    finally:
        with t.phase("teardown"):
            ray_module.shutdown()
