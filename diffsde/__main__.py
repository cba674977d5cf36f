"""``python -m diffsde``: the ``diffsde`` command."""

import sys

from ._cli import main

sys.exit(main())
