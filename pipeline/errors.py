"""The errors a user sees: each names what went wrong and where, so the CLI can print one clear message.

They travel between processes and cluster workers, so every field is a plain string or int and
`__reduce__` rebuilds them from those fields alone.
"""

from __future__ import annotations

import os
import traceback

_FRAMEWORK_DIR = os.path.dirname(os.path.abspath(__file__))


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


class SinkError(PipelineError):
    """The destination refuses the output (exists in `error` mode, inside the input, ...)."""


class StageError(PipelineError):
    """A user's stage raised: names the stage, the chunk, its input file and the user's own traceback."""

    def __init__(self, stage: str, chunk: int | None, source: str, error: str, user_traceback: str) -> None:
        where = f"stage '{stage}' failed"
        if chunk is not None:
            where += f" on chunk {chunk}"
        if source:
            where += f" (input {source})"
        message = f"{where}: {error}"
        if user_traceback:
            message += "\n" + user_traceback.rstrip()
        super().__init__(message)
        self.stage, self.chunk, self.source = stage, chunk, source
        self.error, self.user_traceback = error, user_traceback

    def __reduce__(self):
        return (type(self), (self.stage, self.chunk, self.source, self.error, self.user_traceback))

    @classmethod
    def from_exception(cls, exc: BaseException, stage: str, chunk: int | None, source: str) -> "StageError":
        """Wrap `exc`, keeping only the traceback frames of the user's code (not the framework's)."""
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_FRAMEWORK_DIR)]
        lines = "".join(traceback.format_list(frames))
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return cls(stage, chunk, source, error, lines)
