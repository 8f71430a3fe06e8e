"""``python -m fastnst.stylize``: runs the command line in fastnst/cli/stylize.py."""

import sys

from fastnst.cli.stylize import main

if __name__ == "__main__":
    sys.exit(main())
