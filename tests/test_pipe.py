"""The built-in stage `stages.external:pipe`, with real programs (awk, cat, sort, Python scripts written here):
the same answer as pandas on every engine, every format, arguments and environment as given; failures named
from the CLI with nothing committed; and no program or grandchild left running after a failure, a timeout or
Ctrl-C."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import psutil
import pyarrow as pa
import pytest

import spawned
from pipeline import Pipeline, children
from pipeline.errors import StageError
from pipeline.io import FileSource
from stages.external import pipe

PIPELINE = str(Path(sys.executable).parent / "pipeline")
PYTHON = sys.executable

TO_LOWER = """
    import csv, sys
    out = csv.writer(sys.stdout, lineterminator="\\n")
    out.writerow(["id", "carrier", "double_distance", "half_delay"])
    for row in csv.DictReader(sys.stdin):
        half = repr(float(row["delay"]) / 2) if row["delay"] else ""
        out.writerow([row["id"], row["carrier"].lower(), row["double_distance"], half])
"""
ECHO_ARGS = """
    import json, os, sys
    sys.stdin.read()
    for arg in sys.argv[1:]:
        print(json.dumps({"arg": arg, "cwd": os.getcwd(), "value": os.environ.get("PIPE_TEST_VALUE"),
                          "has_path": "PATH" in os.environ}))
"""
HANG = """
    import os, subprocess, sys, time
    folder = sys.argv[1]
    sys.stdin.buffer.read()
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", folder])
    print(f"hang: started {os.getpid()}", file=sys.stderr, flush=True)
    with open(os.path.join(folder, f"{os.getpid()}.tmp"), "w") as fh:
        fh.write(f"{os.getpid()} {grandchild.pid}")
    os.replace(os.path.join(folder, f"{os.getpid()}.tmp"), os.path.join(folder, f"{os.getpid()}.pids"))
    time.sleep(600)
"""
FAIL = """
    import sys
    sys.stdin.read()
    for i in range(1, 31):
        print(f"problem {i:02d}", file=sys.stderr)
    sys.exit(3)
"""
GARBAGE = """
    import sys
    sys.stdin.read()
    sys.stdout.write("a,b\\n1,2,3\\n")
"""


def script(folder: Path, name: str, body: str) -> str:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def awk_then_python(folder: Path) -> Pipeline:
    """awk keeps long flights and doubles their distance (CSV fields passed through as text); a Python program
    lowercases the carrier and halves the delay, keeping nulls."""
    awk = ["awk", "-F,", "-v", "OFS=,",
           'NR == 1 {print "id,carrier,double_distance,delay"; next} $3 > 1000 {print $1, $2, $3 * 2, $4}']
    return (Pipeline()
            .then(pipe, name="awk", command=awk, columns=["id", "carrier", "distance", "delay"])
            .then(pipe, name="python", command=[PYTHON, script(folder, "lower", TO_LOWER)]))


def awk_then_python_in_pandas(df: pd.DataFrame) -> pd.DataFrame:
    kept = df[df.distance > 1000]
    return pd.DataFrame({"id": kept.id, "carrier": kept.carrier.str.lower(), "double_distance": kept.distance * 2,
                         "half_delay": kept.delay / 2}).reset_index(drop=True)


def by_id(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("id").reset_index(drop=True)


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def write_job(folder: Path, source: str, command: list[str], engine: str, extra: str = "",
              chunk_rows: int = 250_000) -> Path:
    config = folder / "job.toml"
    config.write_text(
        f'[source]\npath = "{source}"\nchunk_rows = {chunk_rows}\n'
        f'[[stages]]\nname = "ext"\nuses = "stages.external:pipe"\n'
        f'params = {{ command = {toml_list(command)}{extra} }}\n'
        f'[sink]\npath = "{folder / "out"}"\n[engine]\nname = "{engine}"\nworkers = 2\n'
    )
    return config


def alive(pid: int) -> bool:
    try:
        return spawned.alive(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def programs_recorded(folder: Path) -> list[int]:
    """The pids of every program the hanging script ran, and of its grandchild."""
    return [int(pid) for path in folder.glob("*.pids") for pid in path.read_text().split()]


def left_running(marker: Path) -> list[psutil.Process]:
    """Processes still running whose arguments name `marker`: the programs and grandchildren of one test,
    including any that did not get as far as recording their pids."""
    found = []
    for process in psutil.process_iter():
        try:
            if str(marker) in " ".join(process.cmdline()) and spawned.alive(process):
                found.append(process)
        except psutil.Error:
            pass
    return found


def assert_nothing_left(marker: Path, pids: list[int]) -> None:
    spawned.wait_for(lambda: not any(alive(pid) for pid in pids) and not left_running(marker), 60,
                     f"end of the programs {pids} and everything naming {marker}")


def test_programs_over_each_chunk_give_what_pandas_gives_over_the_whole_table(
        engine, dataset: Path, table: pd.DataFrame, tmp_path: Path):
    out = tmp_path / "out"
    manifest = awk_then_python(tmp_path).run(FileSource(str(dataset), chunk_rows=1000), str(out), engine)
    result = pd.read_parquet(out)
    assert manifest.stats["read"].chunks == 6 and manifest.rows == len(result)
    expected = awk_then_python_in_pandas(table)
    assert result["half_delay"].isna().sum() == expected["half_delay"].isna().sum() > 0  # nulls came back as nulls
    pd.testing.assert_frame_equal(by_id(result), by_id(expected), check_dtype=False, check_exact=True)


ARROW_PROGRAM = """
    import sys
    import pyarrow as pa, pyarrow.compute as pc
    table = pa.ipc.open_stream(sys.stdin.buffer).read_all()
    table = table.append_column("twice", pc.multiply(table["distance"], 2))
    with pa.ipc.new_stream(sys.stdout.buffer, table.schema) as writer:
        writer.write_table(table)
"""
JSONL_PROGRAM = """
    import json, sys
    for line in sys.stdin:
        row = json.loads(line)
        row["twice"] = row["distance"] * 2
        print(json.dumps(row))
"""


@pytest.mark.parametrize("format, engine_name, program", [("arrow", "processes", ARROW_PROGRAM),
                                                         ("jsonl", "threads", JSONL_PROGRAM)])
def test_arrow_and_json_lines_round_trip(table: pd.DataFrame, tmp_path: Path, format: str, engine_name: str,
                                         program: str):
    command = [PYTHON, script(tmp_path, format, program)]
    result = Pipeline().then(pipe, command=command, format=format).run_frame(table, chunks=4, engine=engine_name)
    expected = table.assign(twice=table.distance * 2)
    if format == "jsonl":  # JSON has no categorical: the kind comes back as text
        expected = expected.assign(kind=expected.kind.astype(str))
    pd.testing.assert_frame_equal(by_id(result), by_id(expected), check_dtype=format == "arrow",
                                  check_categorical=False, check_exact=True)


def test_csv_is_quoted_only_where_a_value_needs_it(tmp_path: Path):
    """What a line tool sees on its stdin: plain fields, unless one holds a comma, a quote or a line break."""
    copy = [PYTHON, script(tmp_path, "copy", "import sys, json\n"
                           "raw = sys.stdin.read()\n"
                           "sys.stdout.write(json.dumps({'raw': raw}) + '\\n')\n")]
    plain = pa.table({"city name": ["oslo", "", None], "n": [1, None, 3]})
    assert pipe(plain, copy, output_format="jsonl")["raw"].to_pylist() == ["city name,n\noslo,1\n,\n,3\n"]
    later = pa.concat_tables([plain.slice(0, 1), pa.table({"city name": ['say "hi", x'], "n": [4]})])
    assert pipe(later, copy, output_format="jsonl")["raw"].to_pylist() == ['city name,n\n"oslo",1\n"say ""hi"", x",4\n']
    quoted = pa.table({"s": ["a b", "", None, 'say "hi"', "x,y"], "n": [1, None, 3, 4, 5]})
    assert pipe(quoted, ["cat"]).to_pylist() == quoted.to_pylist()  # quoted: "" and null stay apart
    assert pipe(plain, ["cat"])["city name"].to_pylist() == ["oslo", None, None]  # plain: both an empty field


def test_a_chunk_larger_than_the_pipe_buffers_passes_through_whole():
    table = pa.table({"n": range(500_000), "s": [f"row {i}" for i in range(500_000)]})
    assert pipe(table, ["cat"]).equals(table)  # cat writes while it reads: both pipes fill at once


def test_arguments_reach_the_program_unchanged_with_env_and_cwd(tmp_path: Path, table: pd.DataFrame):
    args = ["two words", 'say "hi"', "it's", "$HOME", "a,b", "*", "", "tab\there", "ünï"]
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    command = [PYTHON, script(tmp_path, "echo", ECHO_ARGS), *args]
    result = Pipeline().then(pipe, command=command, output_format="jsonl", env={"PIPE_TEST_VALUE": "from env"},
                             cwd=str(workdir)).run_frame(table.head(10), chunks=1, engine="processes")
    assert result["arg"].tolist() == args
    assert set(result["cwd"]) == {str(workdir)}
    assert set(result["value"]) == {"from env"} and result["has_path"].all()  # added to the environment


def test_a_shell_command_runs_with_sh():
    table = pa.table({"n": [3, 1, 2]})
    result = pipe(table, "sort -n | sed 's/^n$/m/'", shell=True)  # sort -n puts the header, not a number, first
    assert result.to_pylist() == [{"m": 1}, {"m": 2}, {"m": 3}]


def test_a_program_that_writes_nothing_keeps_no_rows_and_the_columns_it_was_given():
    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    result = pipe(table, ["true"], columns=["b"])
    assert result.num_rows == 0 and result.schema == pa.schema([("b", pa.string())])


def test_background_children_of_a_program_that_exited_are_killed(tmp_path: Path):
    """The background child holds the program's stdout: unless killed when the program exits, the call would
    wait for it and end in the timeout instead."""
    pid_file = tmp_path / "background.pid"
    command = f"sleep 600 & echo $! > '{pid_file}'; cat"
    assert pipe(pa.table({"n": [1]}), command, shell=True, timeout=120).to_pylist() == [{"n": 1}]
    background = int(pid_file.read_text())
    spawned.wait_for(lambda: not alive(background), 60, f"background child {background} gone")


@pytest.mark.parametrize("params, message", [
    ({"command": "sort -n"}, "is a string: give it as a list of arguments"),
    ({"command": ["sort"], "shell": True}, "with shell = true, command must be one string"),
    ({"command": []}, "command must be a non-empty list of strings"),
    ({"command": ["head", "-n", 5]}, "command must be a non-empty list of strings"),
    ({"command": ["cat"], "format": "xml"}, "format must be one of csv, jsonl, arrow, got 'xml'"),
    ({"command": ["cat"], "output_format": "parquet"}, "output_format must be one of csv, jsonl, arrow"),
    ({"command": ["cat"], "timeout": 0}, "timeout must be a number of seconds above 0"),
    ({"command": ["cat"], "env": {"THREADS": 4}}, "env must be a table of names to string values"),
    ({"command": ["cat"], "columns": ["nope"]}, "missing column(s) 'nope'; available: n"),
])
def test_bad_params_are_refused_before_a_program_starts(params: dict, message: str):
    with pytest.raises((ValueError, KeyError)) as caught:
        pipe(pa.table({"n": [1]}), **params)
    assert message in str(caught.value)


def test_a_missing_program_is_named_on_every_engine(engine, dataset: Path, tmp_path: Path):
    with pytest.raises(StageError) as caught:
        Pipeline().then(pipe, command=["no-such-program-here", "x"]).run(
            FileSource(str(dataset / "data-001.parquet")), str(tmp_path / "out"), engine)
    message = str(caught.value)
    assert caught.value.stage == "pipe" and caught.value.chunk == 0 and "data-001.parquet" in caught.value.source
    assert "cannot start `no-such-program-here x`: 'no-such-program-here': No such file or directory" in message
    assert "must be installed on every worker (on a cluster, on the worker machines); PATH searched: " in message
    assert not (tmp_path / "out").exists()


def test_registered_groups_are_killed_on_interrupt_and_later_ones_until_resumed():
    started = [subprocess.Popen(["sleep", "600"], process_group=0) for _ in range(2)]
    try:
        with children.running(started[0]):
            children.interrupt()
            assert started[0].wait(timeout=60) == -signal.SIGKILL
            with children.running(started[1]):  # registered after the interrupt: killed at once
                assert started[1].wait(timeout=60) == -signal.SIGKILL
    finally:
        children.resume()
        for popen in started:
            popen.kill()
            popen.wait()
    assert pipe(pa.table({"n": [1]}), ["cat"]).num_rows == 1  # resumed: programs run again


def test_an_engine_runs_programs_again_after_an_interrupted_run(engine, dataset: Path, table: pd.DataFrame,
                                                               tmp_path: Path):
    """Ctrl-C (here from a thread, once programs run) kills the programs; the engine is still of use. On ray an
    interrupted run waits for the programs in flight until their timeout (short here), as the README says."""
    pids = tmp_path / "pids"
    pids.mkdir()
    timeout = 3 if engine.name == "ray" else 120
    hang = Pipeline().then(pipe, command=[PYTHON, script(tmp_path, "hang", HANG), str(pids)], timeout=timeout)

    def interrupt_once_running() -> None:
        spawned.wait_for(lambda: programs_recorded(pids), 180, "a program running")
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_once_running, daemon=True)
    # Ctrl-C raises here even when the tests run in a background job, which a non-interactive shell starts with
    # SIGINT ignored (then Python installs no handler of its own, and the signal would be dropped).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            hang.run(FileSource(str(dataset), chunk_rows=500), str(tmp_path / "out"), engine)
        interrupter.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert_nothing_left(pids, programs_recorded(pids))
    result = Pipeline().then(pipe, command=["cat"]).run(FileSource(str(dataset), chunk_rows=500),
                                                         str(tmp_path / "again"), engine)
    assert result.rows == len(table)


# --- from the CLI ------------------------------------------------------------------------------------------

def test_a_bad_format_in_a_config_is_named_before_a_program_starts(dataset: Path, tmp_path: Path):
    started = tmp_path / "started"
    command = ["sh", "-c", f"touch '{started}'; cat"]
    config = write_job(tmp_path, str(dataset / "data-000.parquet"), command, "processes", ', format = "xml"')
    for verb in ("validate", "run"):
        result = spawned.run([PIPELINE, verb, str(config)], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        first = result.stderr.splitlines()[0]
        assert "stages[0].params (stage 'ext'): pipe: format must be one of csv, jsonl, arrow, got 'xml'" in first
    assert not started.exists() and not (tmp_path / "out").exists()


CASES = {
    "exit": (lambda folder, pids: [PYTHON, script(folder, "fail", FAIL), str(pids)], "",
             ["exited with code 3; the end of its stderr:", "    problem 11", "    problem 30"]),
    "not found": (lambda folder, pids: ["no-such-program-here", str(pids)], "",
                  ["cannot start `no-such-program-here ", "must be installed on every worker", "PATH searched: "]),
    "garbage": (lambda folder, pids: [PYTHON, script(folder, "garbage", GARBAGE), str(pids)], "",
                ["wrote output that is not CSV with a header (CSV parse error: Expected 2 columns, got 3",
                 "its stdout began with b'a,b\\n1,2,3\\n'"]),
    "hang": (lambda folder, pids: [PYTHON, script(folder, "hang", HANG), str(pids)], ", timeout = 2",
             ["ran past its timeout of 2 s, so its process group was killed; the end of its stderr:",
              "    hang: started "]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_failing_program_is_reported_in_one_message_and_leaves_nothing(dataset: Path, tmp_path: Path, case: str):
    make_command, extra, expected = CASES[case]
    pids = tmp_path / "pids"
    pids.mkdir()
    source = dataset / "data-002.parquet"
    command = make_command(tmp_path, pids)
    config = write_job(tmp_path, str(source), command, "processes", extra)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = spawned.run([PIPELINE, "run", str(config), "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: stage 'ext' failed on chunk 0 (input ") and str(source) in first, first
    label = f"`{command[0]}" if case == "not found" else f"`{shlex.join(command)}`"
    assert label in first, first
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "problem 10" not in result.stderr  # only the end of the program's stderr
    assert "Traceback" not in result.stderr and "pipeline/tasks.py" not in result.stderr
    assert "stages/external.py" not in result.stderr  # the stage library's frames are ours, not the user's
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing committed, nothing staged
    assert_nothing_left(pids, programs_recorded(pids))
    if case == "hang":
        assert len(programs_recorded(pids)) == 2  # the program and its grandchild, both checked above


def _interruptible() -> None:
    """In the child, before exec: Ctrl-C as from a terminal, even when the tests run in a background job."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("engine_name", ["sync", "threads", "processes", "joblib", "dask"])
def test_ctrl_c_kills_the_programs_and_their_children(dataset: Path, tmp_path: Path, engine_name: str):
    pids = tmp_path / "pids"
    pids.mkdir()
    command = [PYTHON, script(tmp_path, "hang", HANG), str(pids)]
    config = write_job(tmp_path, str(dataset), command, engine_name, ", timeout = 600", chunk_rows=500)
    run = spawned.spawn([PIPELINE, "run", str(config), "--quiet"], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                        preexec_fn=_interruptible)
    try:
        spawned.wait_for(lambda: programs_recorded(pids) or run.poll() is not None, 180, "a program running")
        assert run.poll() is None, run.stderr.read()
        os.killpg(run.pid, signal.SIGINT)  # as a terminal does: the whole foreground process group
        stderr = run.communicate(timeout=120)[1]
        assert run.returncode == 130, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert not (tmp_path / "out").exists()
        assert_nothing_left(pids, programs_recorded(pids))
    finally:  # on any failure above, nothing the run started outlives the test
        spawned.stop(run, known=left_running(pids))
