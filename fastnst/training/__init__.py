"""Training a transformation network: the typed config, the phases of a run, data, the loop,
distributed helpers and the record of what a run was made from (its checkpoints: fastnst/checkpoint.py).

``python -m fastnst.train`` (fastnst/train.py) runs the command line, fastnst/cli/train.py."""
