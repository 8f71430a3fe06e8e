"""``python -m fastnst <command> ...``: the ``fastnst`` command (fastnst/cli/main.py)."""

import sys

from fastnst.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
