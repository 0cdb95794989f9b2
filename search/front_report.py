"""`python -m search.front_report EXPERIMENT_DIR`: a multi-objective search's front (its code: `search.report.front`)."""
if __name__ == "__main__":
    import sys

    from search.report.front import main

    sys.exit(main())
