"""``python -m fastnst.evaluate``: see fastnst/cli/evaluate.py (the metrics are in fastnst/eval/metrics.py)."""

if __name__ == "__main__":
    import sys

    from fastnst.cli.evaluate import main

    sys.exit(main())
