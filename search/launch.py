"""`python -m search.launch SPACE.yaml`: the launcher's command (its code: `search.run.launch`)."""
if __name__ == "__main__":
    from search.io.signals import exit_early

    exit_early()  # first: a signal while the imports below load ends in one line, not a traceback
    import sys

    from search.run.launch import main

    sys.exit(main())
