"""The search space: a YAML file parsed and validated before Ray starts (`parse`, into `settings`), turned
into an Optuna define-by-run function (`optuna`), what each trial receives (`trial`), the baselines, and
ASHA's rungs (`rungs`).

A space file holds the run config sections (`tasks`, `data`, `model`, `train`, `strategy`) that every
trial shares, a `search` section (metric, budget, ASHA, resources) and a `space` section whose
entries mirror the config keys they override. A `space` leaf is a fixed value or one of::

    {choice: [a, b, c]}                      # a categorical over constants
    {choice: {optA: {k: ...}, optB: {}}}     # a strategy choice: `name` plus that option's own knobs,
                                             # sampled only when the option is chosen
    {uniform: [lo, hi]}  {loguniform: [lo, hi]}  {int: [lo, hi]}
    groups: {partition: all}                 # a task grouping: any partition of `tasks` (52 for five),
    groups: {partition: [[[binary, gory], [mature, slapstick, sarcasm]], [[binary, ...]]]}  # or some

Optuna parameter names are dotted paths (`train.lr`, `strategy.combiner`,
`strategy.combiner.gradnorm.alpha`), unique per branch as define-by-run requires. A trial's config is
the flat dict of the dotted config keys it used (`strategy.combiner.name`, `strategy.combiner.alpha`,
`train.lr`), which is also what MLflow records as its parameters.
"""
