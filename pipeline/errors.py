"""The errors a user sees: each names what went wrong and where, so the CLI can print one clear message.

They travel between processes and cluster workers, so every field is a plain string or int and
`__reduce__` rebuilds them from those fields alone.
"""

from __future__ import annotations

import linecache
import os
import traceback

# The framework and its built-in stage library: frames in either are ours, not the user's, and are not shown.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OURS = tuple(os.path.join(_ROOT, package) + os.sep for package in ("pipeline", "stages"))


class PipelineError(Exception):
    """Base of every error the framework reports to the user (exit code 1 in the CLI)."""

    exit_code = 1


class ConfigError(PipelineError):
    """A config file, key or value is wrong; raised before anything runs (exit code 2)."""

    exit_code = 2


class InputError(PipelineError):
    """An input file cannot be listed or read."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read input file {path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class BadInputFiles(PipelineError):
    """Input files that cannot be used, each named with what is wrong with it."""

    def __init__(self, problems: list[tuple[str, str]], hint: str = "") -> None:
        lines = [f"{len(problems)} bad input file(s):"] + [f"  {path}: {why}" for path, why in problems]
        super().__init__("\n".join(lines) + (f"\n{hint}" if hint else ""))
        self.problems, self.hint = problems, hint

    def __reduce__(self):
        return (type(self), (self.problems, self.hint))


class SinkError(PipelineError):
    """The destination refuses the output (exists in `error` mode, inside the input, ...)."""


Frame = tuple[str, int, str]  # file, line number, function


class StageError(PipelineError):
    """A user's stage raised: names the stage, the chunk, its input file and the user's own traceback."""

    def __init__(
        self, stage: str, chunk: int | None, source: str, error: str, frames: list[Frame], attempts: int = 1
    ) -> None:
        super().__init__(stage, chunk, source, error)
        self.stage, self.chunk, self.source, self.error, self.frames = stage, chunk, source, error, frames
        self.attempts = attempts  # the scheduler counts runs lost to dead workers; the stage's own error is final

    def __str__(self) -> str:
        where = f"stage '{self.stage}' failed"
        if self.chunk is not None:
            where += f" on chunk {self.chunk}"
        if self.source:
            where += f" (input {self.source})"
        where += f", attempt {self.attempts}" + (" (not retried: the stage itself raised)" if self.attempts == 1 else "")
        return f"{where}: {self.error}" + ("\n" + _format(self.frames) if self.frames else "")

    @property
    def user_traceback(self) -> str:
        return _format(self.frames)

    def __reduce__(self):
        return (type(self), (self.stage, self.chunk, self.source, self.error, self.frames, self.attempts))

    @classmethod
    def from_exception(cls, exc: BaseException, stage: str, chunk: int | None, source: str) -> "StageError":
        """Wrap `exc`, keeping only the traceback frames of the user's code (not the framework's)."""
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return cls(stage, chunk, source, error, _user_frames(exc))


def _user_frames(exc: BaseException) -> list[Frame]:
    """Frames outside the framework. Code shipped by value (cloudpickle) has lost its file name; the
    module's `__file__`, which travels with its globals, restores it."""
    frames = []
    for frame, line in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if filename.startswith("<") and "__file__" in frame.f_globals:
            filename = frame.f_globals["__file__"]
        if not filename.startswith(_OURS):
            frames.append((filename, line, frame.f_code.co_name))
    return frames


def _format(frames: list[Frame]) -> str:
    """Like a traceback; source lines are looked up where the message is shown (the user's machine)."""
    lines = []
    for filename, number, name in frames:
        lines.append(f'  File "{filename}", line {number}, in {name}')
        code = linecache.getline(filename, number).strip()
        if code:
            lines.append(f"    {code}")
    return "\n".join(lines)
