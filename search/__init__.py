"""The search service: space YAML -> Optuna define-by-run, Ray Tune trainable, ASHA, MLflow, launch CLI.

The only package that imports Ray, Optuna and MLflow; `mtl_core` stays pure PyTorch.
"""
