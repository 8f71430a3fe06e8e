"""Command-line front ends: argument parsing, progress bars, printing and exit codes.

The library modules beside this package never parse arguments or draw progress bars; these do.
"""
