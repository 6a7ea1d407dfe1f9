"""Typed errors. The library raises these; only `pipelines/` turns them into messages and exit codes."""


class HanError(Exception):
    """Base class of every error han raises on purpose. Its message is one line meant for a user."""

    exit_code = 1


class ConfigError(HanError):
    """A configuration file or override is invalid."""

    exit_code = 2


class TrainingDiverged(ConfigError):
    """The training loss became NaN or infinite: a setting (usually train.lr) must change; exit code 2."""


class DataError(HanError):
    """Input data is missing, unreadable or malformed."""

    exit_code = 3


class RunDirError(HanError):
    """A run directory is missing, incomplete or would be overwritten."""

    exit_code = 4


class StorageError(HanError):
    """A file could not be written (disk full, read-only, quota); the previous version is left intact."""

    exit_code = 5


class TrainingStopped(HanError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint; exit code 128 + the signal number."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number
