"""The space as Optuna sees it: a define-by-run function over its dotted parameter names."""
from __future__ import annotations

from typing import Any

from mtl_core.grouping import canonical, partitions
from search.analysis.labels import partition_label
from search.space.trial import TrialMeta, trial_entry

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int", "partition")


def is_distribution(node: Any) -> bool:
    """A `space` leaf that Optuna samples (`{choice: ...}`, `{uniform: ...}`, ...) rather than a fixed value."""
    return isinstance(node, dict) and len(node) == 1 and next(iter(node)) in DISTRIBUTIONS


def partition_options(arg: Any, tasks: tuple[str, ...]) -> list[list[list[str]]]:
    """The partitions a `partition` entry allows, as lists of task lists in configured order."""
    chosen = partitions(tasks) if arg == "all" else [canonical(p, tasks) for p in arg]
    return [[list(g) for g in p] for p in chosen]


class DefineByRun:
    """The space as an Optuna define-by-run function (a picklable module-level class: Tune pickles the
    searcher into the experiment, and a function defined in __main__ would not restore)."""

    def __init__(self, space: dict[str, Any], tasks: tuple[str, ...] = (), fixed: dict[str, Any] | None = None,
                 base: dict[str, Any] | None = None):
        self.space, self.tasks, self.fixed, self.base = space, tuple(tasks), dict(fixed or {}), dict(base or {})

    def __call__(self, trial) -> dict[str, Any]:
        used: dict[str, Any] = dict(self.fixed)
        self._walk(trial, self.space, "", used)
        # Constants returned here are merged into the Tune config: the trial reads its entry here.
        return {"trial": trial_entry(used, TrialMeta("search", number=trial.number), self.base)}

    def _walk(self, trial, node, path, used) -> None:
        if is_distribution(node):
            kind, arg = next(iter(node.items()))
            if kind == "choice" and isinstance(arg, dict):
                option = trial.suggest_categorical(path, list(arg))
                used[f"{path}.name"] = option
                branch: dict[str, Any] = {}
                prefix = f"{path}.{option}"
                for k, v in (arg[option] or {}).items():
                    self._walk(trial, v, f"{prefix}.{k}", branch)
                # sampled under a branch-unique Optuna name, stored under the config key
                used.update({path + key[len(prefix):]: val for key, val in branch.items()})
                return
            if kind == "choice":
                # Optuna categoricals hold scalars; lists/dicts are chosen by index.
                if all(isinstance(v, (str, int, float, bool)) or v is None for v in arg):
                    used[path] = trial.suggest_categorical(path, arg)
                else:
                    used[path] = arg[trial.suggest_categorical(path, list(range(len(arg))))]
            elif kind == "partition":
                options = {partition_label(p): p for p in partition_options(arg, self.tasks)}
                used[path] = options[trial.suggest_categorical(path, list(options))]
            elif kind == "uniform":
                used[path] = trial.suggest_float(path, float(arg[0]), float(arg[1]))
            elif kind == "loguniform":
                used[path] = trial.suggest_float(path, float(arg[0]), float(arg[1]), log=True)
            else:
                used[path] = trial.suggest_int(path, arg[0], arg[1])
        elif isinstance(node, dict):
            for k, v in node.items():
                self._walk(trial, v, f"{path}.{k}" if path else k, used)
        else:
            used[path] = node


def sample_configs(spec, n: int) -> list[dict[str, Any]]:
    """n configurations of the space `spec` (a SpaceSpec) as the search would draw them first (TPE's random start-up), no Ray."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.search.seed),
                                direction="maximize" if spec.search.mode == "max" else "minimize")
    fn = DefineByRun(spec.space, spec.config.tasks, base=spec.base)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(fn(trial)["trial"]["overrides"])
        study.tell(trial, 0.0)
    return out
