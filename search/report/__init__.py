"""The report of a sweep: `EXPERIMENT_DIR/report/`, written from the experiment's tables (`inputs`) in memory
at the end of a launch, or read back from the folder by `python -m search.report` (`cli`).

It holds the answer (retrained configurations against the baselines, Δm%, the paired verdict against equal
sum), the Pareto front of the tasks, each strategy axis at a matched budget with effects and intervals,
learning curves, per-task F1 of the top configurations, the affinity heatmap, the parameters' importances
(fANOVA on every trial at a matched budget), the bag-of-words floor (`sections`, `plots`), and `summary.md`
linking them; `summary.html` is the same page with the images inside (`html`). Configurations are named by
`search.analysis.labels`, epochs counted from 1 as MLflow's steps.
"""
