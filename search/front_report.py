"""`python -m search.front_report EXPERIMENT_DIR`: a multi-objective search's front (its code: `search.report.cli`)."""
if __name__ == "__main__":
    import sys

    from search.report.cli import front_main

    sys.exit(front_main())
