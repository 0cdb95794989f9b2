"""MLflow: the parent and child runs, the experiment folder's own store, the outage queue and its replay,
the dataset as a run input, and the best configuration as an MLflow model."""
