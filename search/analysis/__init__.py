"""Pure functions on results: statistics, the race's decision, Pareto ranking, labels and the tables."""
