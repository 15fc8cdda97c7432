"""pedseg_lib: the companion library of the pedseg book.

Modules, one concern each: ``profiles`` (which budget and data), ``data`` (Penn-Fudan and its
synthetic stand-in), ``model`` (Mask R-CNN, checkpoints), ``config`` (training presets), ``engine``
(the training loop), ``evaluation`` (COCO metrics), ``inference`` (prediction), ``visualize``
(figures) and ``cli`` (the ``pedseg`` command).
"""

__version__ = "0.1.0"
