"""The project's exceptions: each names the file, key, recording or trial it is about."""

from __future__ import annotations

from typing import Any


class SakdnError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(SakdnError, ValueError):
    """A configuration key, value or file is wrong.

    The message always names the key and the offending value, and the file when the value
    came from one, so a user can fix the input without reading a traceback.
    """

    def __init__(self, key: str, value: Any, problem: str, file: str | None = None) -> None:
        self.key, self.value, self.problem, self.file = key, value, problem, file
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{key} = {value!r}: {problem}")

    def with_file(self, file: str) -> ConfigError:
        """The same error, now naming the file the value came from."""
        return ConfigError(self.key, self.value, self.problem, file)


class SearchSpaceError(SakdnError, ValueError):
    """A search-space file is wrong (unknown key, distribution or bound)."""

    def __init__(self, file: str | None, key: str, reason: str) -> None:
        self.file, self.key, self.reason = file, key, reason
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{key}: {reason}")


class DatasetError(SakdnError):
    """A dataset file or folder cannot be used; names the path and what is wrong."""

    def __init__(self, path: str, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


class SignalError(SakdnError, ValueError):
    """A sensor recording cannot become a GAF image (NaN, empty); names the recording."""

    def __init__(self, recording: str, problem: str) -> None:
        self.recording, self.problem = recording, problem
        super().__init__(f"recording {recording}: {problem}")


class TrackingLoginError(SakdnError):
    """A tracking server cannot be used with this process's login; names the server (when
    known) and what is missing or wrong, never the password."""

    def __init__(self, uri: str | None, problem: str) -> None:
        self.uri, self.problem = uri, problem
        super().__init__(f"tracking server {uri}: {problem}" if uri else problem)


class TrialDiverged(SakdnError):
    """A loss became NaN or infinite; names the stage, epoch and loss term."""

    def __init__(self, stage: str, epoch: int, term: str, value: float) -> None:
        self.stage, self.epoch, self.term, self.value = stage, epoch, term, value
        super().__init__(f"{stage} stage diverged at epoch {epoch}: loss term '{term}' = {value}")
