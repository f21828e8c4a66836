"""The `pipeline` command: run, plan and validate a TOML config.

Exit codes: 0 success, 1 the run failed (stage, chunk and input named), 2 bad config or usage,
130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError, PipelineError

if TYPE_CHECKING:  # the rest is imported by the command that needs it: `--help` answers at once
    from rich.console import Console

    from pipeline.config import Job


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline", description="Run chunked pandas pipelines on any engine.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the pipeline and commit its output"),
        ("plan", "print the task graph without running"),
        ("validate", "check the config, its stages and its paths"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("config", help="path to the TOML config")
        sub.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
            help="override a config value, e.g. engine.workers=4 or stages.0.params.threshold=30",
        )
        sub.add_argument("--engine", help="engine name (overrides [engine] name)")
        sub.add_argument("--workers", type=int, help="number of workers (overrides [engine] workers)")
        sub.add_argument("--address", help="cluster address for the dask or ray engine")
        sub.add_argument("--quiet", action="store_true", help="no progress bar or summary")
        if name == "run":
            sub.add_argument("--resume", action="store_true", help="reuse what an interrupted run already finished")
            sub.add_argument("--report", metavar="PATH.html", help="write a self-contained HTML report of the run")
            sub.add_argument("--trace", metavar="PATH.json", help="write the run's timeline as a Chrome trace")
            sub.add_argument("--json", action="store_true", help="print the outputs' manifests and summary as JSON")
        if name == "plan":
            sub.add_argument("--format", choices=("text", "dot", "svg"), default="text",
                             help="text (default), or the task groups as a graph: dot, or a standalone svg")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from rich.console import Console
    from rich.markup import escape

    from pipeline import config as config_module

    console = Console(stderr=True)
    overrides = list(args.overrides)
    for key in ("engine", "workers", "address"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"engine.{'name' if key == 'engine' else key}={value}")
    try:
        job = config_module.load(args.config, [_quoted(o) for o in overrides])
        return _COMMANDS[args.command](job, args, console)
    except PipelineError as exc:
        message = str(exc)
        if isinstance(exc, ConfigError) and not message.startswith((args.config, "--set", "--report", "--trace")):
            message = f"{args.config}: {message}"  # raised after loading, e.g. by the engine
        console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]: nothing was committed; `pipeline run CONFIG --resume` picks up what finished")
        return 130


def _quoted(override: str) -> str:
    """CLI flags are plain strings; numbers stay numbers."""
    key, _, value = override.partition("=")
    if key in ("engine.name", "engine.address") and not value.startswith('"'):
        return f'{key}="{value}"'
    return override


def _run(job: Job, args: argparse.Namespace, console: Console) -> int:
    from rich.console import Console
    from rich.markup import escape

    from pipeline.dataset import run as run_outputs
    from pipeline.engines import get_engine
    from pipeline.progress import progress_bar, summary
    from pipeline.report import written

    engine_config = job.config.engine
    quiet = args.quiet
    report = args.report or job.config.run.report
    trace = args.trace or job.config.run.trace
    title = f"{job.path.name} on {engine_config.name}"
    with written(report, trace, title, engine_config.name, ("--report", "--trace")) as manifests:
        with get_engine(engine_config.name, **engine_config.options()) as engine:
            with contextlib.nullcontext() if quiet else progress_bar(console, title) as on_progress:
                if job.outputs:
                    got = run_outputs(*job.outputs, engine=engine, resume=args.resume, on_progress=on_progress)
                    manifests += got.values()
                else:
                    manifests.append(job.pipeline.run(job.source, job.sink, engine, on_progress=on_progress,
                                                      resume=args.resume))
    if args.json:
        print(json.dumps({"outputs": [m.facts() for m in manifests], "report": report, "trace": trace}, default=str))
    for manifest in manifests:
        if not quiet and not args.json:
            Console().print(summary(manifest))
        for path, why in manifest.skipped:
            console.print(f"[yellow]skipped[/] {escape(path)}: {escape(why)}", highlight=False)
    if manifests[0].reused:
        console.print(f"resumed: {manifests[0].reused} task(s) reused from the interrupted run", highlight=False)
    return 0


def _plan(job: Job, args: argparse.Namespace, console: Console) -> int:
    from pipeline.graph_run import describe
    from pipeline.plan_graph import draw

    if job.outputs and args.format != "text":
        print(draw(describe(job.outputs), args.format), end="")
        return 0
    if job.outputs:
        print(f"{job.path}: {len(job.outputs)} output(s): {', '.join(o.sink.path for o in job.outputs)}")
        print(describe(job.outputs).describe())
        return 0
    plan = job.pipeline.plan(job.source)
    if args.format != "text":
        print(draw(plan, args.format), end="")
        return 0
    print(f"{job.path}: {job.source.describe()} → {job.config.sink.path}")
    print(plan.describe())
    return 0


def _validate(job: Job, args: argparse.Namespace, console: Console) -> int:
    from pipeline.graph_run import describe
    from pipeline.plan import discover

    if job.outputs:
        plan = describe(job.outputs)
        print(f"{job.path}: ok — {len(job.outputs)} output(s), {len(plan)} tasks")
        return 0
    source, chunks = discover(job.pipeline.stages, job.source)
    stages = ", ".join(s.name for s in job.pipeline.stages)
    print(f"{job.path}: ok — {len(chunks)} chunks from {source.describe()}; stages: {stages}")
    return 0


_COMMANDS = {"run": _run, "plan": _plan, "validate": _validate}


if __name__ == "__main__":
    sys.exit(main())
