"""``python -m fastnst.info``: runs the command line in fastnst/cli/info.py (the machine, as fastnst sees it)."""

import sys

from fastnst.cli.openmp import prefer_short_spin

prefer_short_spin()  # before torch loads, as the other commands (see fastnst/cli/openmp.py)

from fastnst.cli.info import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
