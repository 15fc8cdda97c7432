"""``python -m pedseg_lib`` (and ``torchrun -m pedseg_lib``) runs the ``pedseg`` command."""

import sys

from pedseg_lib.cli import main

if __name__ == "__main__":
    sys.exit(main())
