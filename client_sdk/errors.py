"""Errors of the client SDK: the ``SdkError`` branch of the tree in keys/errors.py.

::

    SdkError
    ├── InputError (ValueError)        an input file that cannot be read as mapped
    ├── MappingError (ValueError)      a mapping that does not validate (every problem at once)
    ├── OrgStoreError                  the organisation directory is missing or not initialised
    ├── OutputError                    an output that would replace an input, or cannot be written
    ├── BrokerCallError                the broker refused or could not be reached
    ├── JobConfigError (ValueError)    a `tessera-sdk run` job file that does not validate
    ├── JobBusyError                   another run of the same job holds its lock
    ├── QualityFloorError              the extract is graded below the job's floor
    └── ExtraMissingError (ImportError) a command whose optional distribution is not installed
"""

from __future__ import annotations

from keys.errors import SdkError

__all__ = [
    "BrokerCallError",
    "ExtraMissingError",
    "InputError",
    "JobBusyError",
    "JobConfigError",
    "MappingError",
    "OrgStoreError",
    "OutputError",
    "QualityFloorError",
]


class InputError(SdkError, ValueError):
    """An input file that cannot be read as the mapping says."""

    exit_code = 11


class MappingError(SdkError, ValueError):
    """A mapping file that does not validate; lists every problem at once."""

    exit_code = 12

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source}: invalid mapping: " + "; ".join(problems))


class OrgStoreError(SdkError):
    """The organisation directory is missing, not initialised, or lacks a key."""

    exit_code = 13


class OutputError(SdkError):
    """An output file that would replace an input or an earlier output, or cannot be written."""

    exit_code = 15


class BrokerCallError(SdkError):
    """The broker refused a call (its machine code is kept) or could not be reached."""

    exit_code = 14

    def __init__(self, message: str, *, code: str = "unreachable", status: int = 0) -> None:
        self.code = code
        self.status = status
        super().__init__(message)


class JobConfigError(SdkError, ValueError):
    """A job file that cannot be read or does not validate; lists every problem at once."""

    exit_code = 16


class JobBusyError(SdkError):
    """Another run of the same job still holds its lock."""

    exit_code = 17


class QualityFloorError(SdkError):
    """The extract's quality grade is below the job's floor: nothing was uploaded."""

    exit_code = 18


class ExtraMissingError(SdkError, ImportError):
    """A command whose optional distribution (e.g. the synthetic generator) is missing."""

    exit_code = 19
