"""Hyperparameter sweeps on Optuna (``layerforge sweep CONFIG --space space.yaml``); optional extra ``sweep``.

``space`` reads and checks the search space, ``objective`` trains one trial, ``execute`` runs trials on local
processes or a Dask cluster, ``study`` holds the sweep directory and the Optuna study, ``command`` is the CLI body.
"""
