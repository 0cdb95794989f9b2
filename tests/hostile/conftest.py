from hostile_helpers import broken_data, good_data, tiny_train_config  # noqa: F401 (fixtures of the catalogue)
