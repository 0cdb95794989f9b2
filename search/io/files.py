"""The experiment folder's files by what they hold, and the one error every reader of them raises."""


class Files:
    """The experiment folder's files, by what they hold (docs/experiment-folder.md); Tune's own state and the
    trial folders beside them are Tune's."""

    STATE = "launch_state.json"  # our bookkeeping: parent run, space file, tracking URI
    SPACE = "space.yaml"  # the space as it runs (after --set); --resume compares against it
    MLFLOW_DB = "mlflow.db"  # the default MLflow store (without --mlflow-uri); search.tracking.store makes it
    PENDING = "mlflow_pending.jsonl"  # tracking operations MLflow did not take (see search.tracking.replay)
    REPLAYED = "mlflow_pending.replayed.jsonl"  # ... and once replayed
    LOCK = "launch.lock"  # held by the one live launcher
    LOG = "launch.log"  # the libraries' own messages
    TRIALS = "trials.parquet"  # one row per trial of the leaderboard's phase
    HISTORY = "history.parquet"  # their metrics per epoch
    LEADERBOARD = "leaderboard.csv"
    FINAL_RUNS = "final_runs.parquet"  # one row per retrained (configuration, seed), with per-clip predictions
    DECISION = "decision.csv"  # the race's verdicts
    TUNED = "tuned_baselines.json"  # the tuned baselines' knobs and trial counts
    AXIS_STUDY = "axis_study.csv"
    PRETRAIN_STUDY = "pretraining_study.csv"
    FLOOR = "bow_floor.json"  # the bag-of-words floor
    GROUPINGS = "groupings.csv"  # the exhaustive mode's partitions
    SELECTION = "selection.csv"
    AFFINITY_GROUPINGS = "affinity_groupings.csv"
    MO_ASHA_RUNGS = "mo_asha_rungs.json"  # MO-ASHA's rungs, kept across --resume
    OPTUNA_JOURNAL = "optuna.journal"
    REPORT = "report"  # summary.md, summary.html and the plots
    SUMMARY = "summary.md"  # in REPORT
    SUMMARY_HTML = "summary.html"  # the same page, its plots inside

    @staticmethod
    def tuning(baseline: str) -> str:
        """A tuned baseline's own search, ranked (search.tune_baselines)."""
        return f"tune_{baseline}.csv"


class CorruptFile(ValueError):
    """A file of the experiment folder that cannot be read back (one line naming it; exit 1)."""
