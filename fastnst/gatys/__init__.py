"""The Gatys et al. (2016) baseline: the stylized image optimised pixel by pixel, and image grids
for its sweeps. ``python -m fastnst.gatys`` runs the command line (fastnst/cli/gatys.py)."""
