"""`python -m search.report EXPERIMENT_DIR`: PNG plots, summary.md and summary.html of a sweep."""
import sys

from search.report.cli import main

sys.exit(main())
