"""The folder boundary: every file of an experiment folder written whole and read back as a stranger may
have left it, the one live launcher's lock, signals, a full disk, the console, and joining a Ray cluster.
Nothing here imports the rest of `search` (docs/robustness.md)."""
