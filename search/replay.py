"""`python -m search.replay EXPERIMENT_DIR`: send what MLflow missed (its code: `search.tracking.replay`)."""
if __name__ == "__main__":
    import sys

    from search.tracking.replay import main

    sys.exit(main())
