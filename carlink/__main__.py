"""``python -m carlink``: the same as the ``carlink`` command."""

import sys

from carlink.cli import main

sys.exit(main())
