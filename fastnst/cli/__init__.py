"""The command lines: argument parsing, progress bars, printing and exit codes over the library.

``python -m fastnst.stylize`` / ``.train`` / ``.gatys`` / ``.export`` run the ``main`` of the module
of the same name here (through tiny shims in the package root).
"""
