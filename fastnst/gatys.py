"""``python -m fastnst.gatys``: runs the command line in fastnst/cli/gatys.py (the method is fastnst.baseline.gatys)."""

import sys

from fastnst.cli.gatys import main

if __name__ == "__main__":
    sys.exit(main())
