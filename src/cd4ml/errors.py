"""Errors that end a cd4ml command, each with the exit code CI scripts rely on.

Exit codes: 0 ok, 1 anything else, 2 usage or config error, 3 model rejected
by the acceptance gate, 4 data rejected by validation, 5 retraining is due
(`cd4ml monitor --check`).
"""

from __future__ import annotations


class Cd4mlError(Exception):
    """A failure the user can act on; the CLI prints it without a traceback."""

    exit_code = 1


class ConfigError(Cd4mlError):
    """The project file or a command-line option is wrong.

    The message names the file, the key and what is wrong with it.
    """

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class DataRejected(Cd4mlError):
    """Validation stopped a dataset; `report` holds every failed check."""

    exit_code = 4

    def __init__(self, message: str, report: "object | None" = None) -> None:
        self.report = report
        super().__init__(message)


class FeatureTestsFailed(Cd4mlError):
    """The project's own tests failed: the pipeline stopped before training."""

    exit_code = 1


class GateRejected(Cd4mlError):
    """The acceptance gate rejected a model; it was registered but not promoted."""

    exit_code = 3

    def __init__(self, message: str, report: "object | None" = None) -> None:
        self.report = report
        super().__init__(message)


class ReleaseError(Cd4mlError):
    """A registry operation (promote, rollback, load) cannot be carried out."""

    exit_code = 1


class RetrainDue(Cd4mlError):
    """`cd4ml monitor --check`: the retraining policy says the champion should be replaced."""

    exit_code = 5
