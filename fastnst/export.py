"""``python -m fastnst.export``: runs the command line in fastnst/cli/export.py."""

import sys

from fastnst.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
