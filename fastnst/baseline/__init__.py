"""The Gatys et al. (2016) baseline: the stylized image optimised pixel by pixel (gatys), and image
grids for its sweeps and comparisons (grid). ``python -m fastnst.gatys`` (fastnst/gatys.py) runs the
command line, fastnst/cli/gatys.py."""
