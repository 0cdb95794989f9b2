"""Pure-PyTorch core: data, HICCAP model, training strategies and the training loop.

Knows nothing of Ray, Optuna or MLflow; `search/` wraps it.
"""

TASKS = ("binary", "mature", "gory", "slapstick", "sarcasm")
MODALITIES = ("text", "video", "audio")
