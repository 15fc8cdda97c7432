"""Exceptions a user can act on.

Every error the library raises for bad input is a :class:`PedsegError` whose message is one line
that names the file, key or value at fault and says what to do. The CLI prints that line and exits
with a non-zero code instead of a traceback.
"""

from __future__ import annotations


class PedsegError(Exception):
    """Base class: a problem with the user's data, files, configuration or environment."""


class DatasetError(PedsegError):
    """A dataset folder or one of its files is missing, unreadable or inconsistent."""


class DownloadError(PedsegError):
    """A download failed, was incomplete or did not match its checksum."""


class CheckpointError(PedsegError):
    """A checkpoint or another file of a run folder (``config.yaml``, ``split.json``) is missing, truncated,
    not what it should be, or does not fit the model or the dataset."""


class ConfigError(PedsegError):
    """A configuration key or value is unknown or invalid."""


class InputError(PedsegError):
    """An image, folder or run folder given to a command or function cannot be read or used."""


class OutputError(PedsegError):
    """A folder or file the library must write cannot be written."""


class MissingDependencyError(PedsegError):
    """An optional package a feature needs is not installed (ONNX Runtime, onnx or PyAV: ``pedseg[deploy]``)."""


class WeightsUnavailableError(PedsegError):
    """Pretrained weights are needed but cannot be downloaded (offline, firewall)."""


class NonFiniteLossError(PedsegError):
    """A training loss became NaN or infinite.

    Attributes:
        image_ids: the ``image_id`` of every image in the offending batch.
        losses: the loss components of that batch, as floats.
        iteration: the global iteration at which it happened.
    """

    def __init__(self, message: str, image_ids: list[int], losses: dict[str, float], iteration: int):
        super().__init__(message)
        self.image_ids = list(image_ids)
        self.losses = dict(losses)
        self.iteration = iteration
