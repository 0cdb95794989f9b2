"""Ray Tune: the trainable, the Optuna searcher, ASHA and MO-ASHA, the progress line, and one builder for
the Tune experiment of any phase."""
