"""``python -m fastnst.stylize``: runs the command line in fastnst/cli/stylize.py."""

import sys

from fastnst.cli.openmp import prefer_short_spin

prefer_short_spin()  # before torch loads (see fastnst/cli/openmp.py)

from fastnst.cli.stylize import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
