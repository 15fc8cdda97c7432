"""pedseg_lib: the companion library of the pedseg book.

Modules, one concern each: ``profiles`` (which budget and data), ``data`` (Penn-Fudan and its
synthetic stand-in), ``model`` (Mask R-CNN, checkpoints), ``config`` (training presets), ``engine``
(the training loop), ``evaluation`` (COCO metrics), ``inference`` (prediction), ``visualize``
(figures), ``notebook`` (the chapters' glue) and ``cli`` (the ``pedseg`` command).
"""

from importlib import metadata as _metadata

try:  # one owner: pyproject.toml's version, as installed
    __version__ = _metadata.version("pedseg")
except _metadata.PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
