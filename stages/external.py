"""Built-in stage `pipe`: an external program as a stage. Each chunk goes to the program's stdin and its
stdout is read back as the new chunk, so a tool in any language (awk, sort, a compiled binary, an R script)
runs over a table of any size, one chunk per call, in parallel on every engine.

The program runs without a shell, in a process group of its own that is killed as a whole when it overruns
its timeout, once it has exited (background children it left behind go with it), when the call fails, and
when the run is interrupted (see `pipeline.children`). It must be installed on every worker.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv
import pyarrow.ipc
import pyarrow.json

from pipeline import children
from pipeline.stage import declare
from stages._checks import as_list, is_number

FORMATS = {"csv": "CSV with a header", "jsonl": "JSON lines", "arrow": "an Arrow IPC stream"}
STDERR_LINES = 20  # of the program's stderr, in an error
STDOUT_BYTES = 200  # of unreadable output, in an error
# An empty field is null, a quoted one ("") an empty string.
_NULLS = pyarrow.csv.ConvertOptions(strings_can_be_null=True, quoted_strings_can_be_null=False)


def _check(command: object, format: object = "csv", output_format: object = None, columns: object = None,
           timeout: object = 600.0, env: object = None, cwd: object = None, shell: object = False) -> None:
    """The params' checks, when the pipeline is validated: a config's mistake is named before any data is read."""
    _checked(command, format, output_format, timeout, env, shell)


@declare(batch="arrow", check=_check)
def pipe(table: pa.Table, command: Sequence[str] | str, format: str = "csv", output_format: str | None = None,
         columns: str | Sequence[str] | None = None, timeout: float = 600.0, env: Mapping[str, str] | None = None,
         cwd: str | None = None, shell: bool = False) -> pa.Table:
    """Run ``command`` with the chunk (only ``columns``, if given) on its stdin; its stdout is the new chunk.

    ``format`` is how the chunk is written: ``"csv"`` (with a header, nothing quoted unless a value needs it;
    then strings are, and ``""`` is an empty string, where an empty field is a null), ``"jsonl"`` (an
    object per row; values JSON has no type for, such as timestamps, as text) or ``"arrow"`` (an Arrow IPC
    stream, which keeps every type). ``output_format`` (default: ``format``) is how stdout is read; from CSV
    and JSON the types are inferred in each chunk (a column empty in one chunk is null there), so a program
    that can write Arrow gives the same types in every chunk. A program that writes nothing at all (not even
    a header) kept no rows: the result has no rows, and the columns and types the program was given.

    ``command`` is a list of arguments, run without a shell, so spaces and quotes in them are safe; with
    ``shell=True`` it is one string for ``/bin/sh -c``. ``env`` is added to the worker's environment,
    ``cwd`` is the program's working directory. A program that exits non-zero, runs past ``timeout``
    seconds or writes output that cannot be read fails the chunk, with the end of its stderr.

    >>> pipe(pa.table({"n": [3, 1, 2]}), ["awk", "-F,", "NR == 1 {print; next} {print $1 * 10}"])["n"].to_pylist()
    [30, 10, 20]
    """
    argv, label, out_format = _checked(command, format, output_format, timeout, env, shell)
    if columns is not None:
        table = _select(table, as_list(columns, "pipe", "columns"))
    stdout = _run(argv, label, _encode(table, format), timeout, env, cwd)
    if not stdout:
        return table.schema.remove_metadata().empty_table()
    return _decode(stdout, out_format, label)


def _checked(command: object, format: object, output_format: object, timeout: object, env: object,
             shell: object) -> tuple[list[str], str, str]:
    """The params that need no data, checked before any program starts: (argv, the command as the user
    would type it, the output format)."""
    for name, value in (("format", format), ("output_format", output_format)):
        if value is not None and value not in FORMATS:
            raise ValueError(f"pipe: {name} must be one of {', '.join(FORMATS)}, got {value!r}")
    if not is_number(timeout, allow_zero=False):
        raise ValueError(f"pipe: timeout must be a number of seconds above 0, got {timeout!r}")
    if env is not None and not (isinstance(env, Mapping)
                                and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise ValueError(f"pipe: env must be a table of names to string values, got {env!r}")
    argv, label = _argv(command, shell)
    return argv, label, output_format or format


def _argv(command: object, shell: object) -> tuple[list[str], str]:
    """The arguments to start, and the command as the user would type it (for messages)."""
    if not isinstance(shell, bool):
        raise ValueError(f"pipe: shell must be true or false, got {shell!r}")
    if shell:
        if not isinstance(command, str) or not command.strip():
            raise ValueError(f"pipe: with shell = true, command must be one string for /bin/sh -c, got {command!r}")
        return ["/bin/sh", "-c", command], command
    if isinstance(command, str):
        raise ValueError(f"pipe: command {command!r} is a string: give it as a list of arguments (run without a "
                         "shell, so spaces and quotes in them are safe), or set shell = true to run it with /bin/sh -c")
    if not isinstance(command, Sequence) or not command or not all(isinstance(a, str) for a in command):
        raise ValueError(f"pipe: command must be a non-empty list of strings, got {command!r}")
    return list(command), shlex.join(command)


def _select(table: pa.Table, names: list[str]) -> pa.Table:
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise KeyError(f"pipe: missing column(s) {', '.join(map(repr, missing))}; "
                       f"available: {', '.join(table.column_names)}")
    return table.select(names)


def _encode(table: pa.Table, format: str) -> bytes:
    if format == "jsonl":
        rows = _nan_as_null(table).to_pylist()
        return "".join(json.dumps(row, default=str) + "\n" for row in rows).encode()
    sink = pa.BufferOutputStream()
    if format == "csv":
        _write_csv(table, sink)
    else:
        with pyarrow.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _write_csv(table: pa.Table, sink: pa.BufferOutputStream) -> None:
    """CSV as line tools expect it: nothing quoted unless a value holds a comma, a quote or a line break (then
    every string is, as RFC 4180 allows). Arrow would quote every string and name; awk would see the quotes."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(table.column_names)
    sink.write(header.getvalue().encode())
    body = pa.BufferOutputStream()  # apart: a later batch may be refused after earlier ones were written
    try:
        pyarrow.csv.write_csv(table, body, pyarrow.csv.WriteOptions(include_header=False, quoting_style="none"))
    except pa.ArrowInvalid:
        body = pa.BufferOutputStream()
        pyarrow.csv.write_csv(table, body, pyarrow.csv.WriteOptions(include_header=False))
    sink.write(body.getvalue())


def _nan_as_null(table: pa.Table) -> pa.Table:
    """JSON has no NaN: a float NaN is written as null."""
    for i, field in enumerate(table.schema):
        if pa.types.is_floating(field.type):
            column = table.column(i)
            table = table.set_column(i, field, pc.if_else(pc.is_nan(column), pa.scalar(None, field.type), column))
    return table


def _decode(stdout: bytes, format: str, label: str) -> pa.Table:
    try:
        if format == "csv":
            return pyarrow.csv.read_csv(pa.BufferReader(stdout), convert_options=_NULLS)
        if format == "jsonl":
            return pyarrow.json.read_json(pa.BufferReader(stdout))
        return pyarrow.ipc.open_stream(stdout).read_all()
    except pa.ArrowException as exc:
        raise ValueError(f"pipe: `{label}` wrote output that is not {FORMATS[format]} ({exc}); "
                         f"its stdout began with {stdout[:STDOUT_BYTES]!r}") from None


def _run(argv: list[str], label: str, data: bytes, timeout: float, env: Mapping[str, str] | None,
         cwd: str | None) -> bytes:
    """The program's stdout. Stdin is fed while stdout and stderr are read (`communicate`), so a chunk larger
    than a pipe's buffer cannot deadlock."""
    environment = {**os.environ, **env} if env else None
    try:
        popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=environment, cwd=cwd, process_group=0)
    except OSError as exc:
        raise _not_started(exc, argv, label, environment, cwd) from None
    with popen, _group_contained(popen), children.running(popen):
        try:
            stdout, stderr = popen.communicate(data, timeout)
        except subprocess.TimeoutExpired as exc:  # the group is killed on the way out
            raise TimeoutError(f"pipe: `{label}` ran past its timeout of {timeout:g} s, so its process group "
                               f"was killed{_tail(exc.stderr or b'')}") from None
    if popen.returncode != 0:
        raise RuntimeError(f"pipe: `{label}` {_ending(popen.returncode, argv)}{_tail(stderr)}")
    return stdout


@contextlib.contextmanager
def _group_contained(popen: subprocess.Popen) -> Iterator[None]:
    """Nothing the program started outlives the call: its group is killed as soon as it exits (a background
    child holding its stdout would otherwise keep the call waiting), and on the way out, however that is."""
    watcher = threading.Thread(target=_kill_group_on_exit, args=(popen.pid,), name="pipeline-pipe", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        _kill_group(popen.pid)
        watcher.join()


def _kill_group_on_exit(pid: int) -> None:
    """Wait for the program to exit, without reaping it: while it is unreaped, its group id is its own."""
    with contextlib.suppress(ChildProcessError):  # already reaped: the caller kills the group
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        _kill_group(pid)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _ending(code: int, argv: list[str]) -> str:
    """How the program ended, for the error: its exit code, or the signal that killed it."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by signal {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    if code == 127 and argv[0] == "/bin/sh":
        return "exited with code 127 (the shell did not find a command: it must be installed on every worker)"
    return f"exited with code {code}"


def _tail(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").splitlines()[-STDERR_LINES:]
    if not lines:
        return "; its stderr was empty"
    return "; the end of its stderr:\n" + "\n".join(f"    {line}" for line in lines)


def _not_started(exc: OSError, argv: list[str], label: str, environment: Mapping[str, str] | None,
                 cwd: str | None) -> OSError:
    """Why the program could not start, said so that it can be fixed on the machine that ran it."""
    if cwd is not None and exc.filename == cwd:
        return type(exc)(f"pipe: cannot start `{label}`: working directory {cwd!r}: {exc.strerror}")
    where = "" if os.sep in argv[0] else f"; PATH searched: {os.pathsep.join(os.get_exec_path(environment))}"
    return type(exc)(f"pipe: cannot start `{label}`: {argv[0]!r}: {exc.strerror}; it must be installed on "
                     f"every worker (on a cluster, on the worker machines){where}")
