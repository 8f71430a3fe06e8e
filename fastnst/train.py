"""``python -m fastnst.train``: runs the command line in fastnst/cli/train.py (the loop is fastnst.training.loop)."""

from fastnst.cli.train import main

if __name__ == "__main__":
    main()
