"""The ``fastnst`` command: one program, a subcommand per task.

    fastnst stylize --model starry photo.jpg          # = python -m fastnst.stylize ...
    fastnst train style=starry                        # Hydra overrides, passed through
    fastnst gatys ... | fastnst evaluate ... | fastnst export ...
    fastnst --help                                    # the list below

A subcommand runs the command line of fastnst/cli/<name>.py with the remaining arguments, exactly as
``python -m fastnst.<name>`` does. This module imports no torch: the stylize command's OpenMP wait
policy (fastnst/cli/openmp.py) must be set before torch loads, so each subcommand's modules are
imported only when it runs. A new subcommand is one more entry in COMMANDS.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastnst.cli.openmp import prefer_short_spin

PROG = "fastnst"


def _stylize(argv: list[str]) -> int:
    prefer_short_spin()  # before torch loads, as python -m fastnst.stylize does
    from fastnst.cli.stylize import main

    return main(argv)


def _train(argv: list[str]) -> int:
    from fastnst.cli.train import main

    sys.argv[1:] = argv  # Hydra reads its overrides from sys.argv
    main()
    return 0


def _gatys(argv: list[str]) -> int:
    from fastnst.cli.gatys import main

    return main(argv)


def _evaluate(argv: list[str]) -> int:
    from fastnst.cli.evaluate import main

    return main(argv)


def _export(argv: list[str]) -> int:
    from fastnst.cli.export import main

    return main(argv)


def _info(argv: list[str]) -> int:
    from fastnst.cli.info import main

    return main(argv)


@dataclass(frozen=True)
class Command:
    summary: str
    run: Callable[[list[str]], int]


COMMANDS: dict[str, Command] = {
    "stylize": Command("stylize photos, folders and videos with a trained model", _stylize),
    "train": Command("train a style model (Hydra overrides, e.g. style=starry)", _train),
    "gatys": Command("the Gatys et al. baseline: optimise the image itself", _gatys),
    "evaluate": Command("content and style losses of stylized images", _evaluate),
    "export": Command("export a style model to ONNX", _export),
    "info": Command("this machine as fastnst sees it: CPU features, the path auto picks and why (for bug reports)", _info),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} <command> [arguments]   ({PROG} <command> --help for its own)", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastnst`` console script and of ``python -m fastnst``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        from fastnst import __version__

        print(f"{PROG} {__version__}")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"{PROG}: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return command.run(argv[1:])
