"""Whether ASHA's first rung comes after every strategy the space can sample has acted.

A rung compares trials at a budget of epochs. A strategy that trains exactly like its axis's plain value
until some epoch (DWA until two epochs of losses exist, an assessed curriculum until its assessment, DSG
until its first stop) is cut at an earlier rung by scores it had no part in: among such strategies the
search's cut is noise. The first rung must then sit at or after the epoch each one first acts in; the
price is epochs, since every trial runs to the first rung (docs/spaces.md#the-first-rung).
"""
from __future__ import annotations

from mtl_core.strategies import AXES, REGISTRIES
from search.space import SpaceSpec, corner_samples
from search.trial import trial_config


def late_strategies(spec: SpaceSpec) -> dict[str, int]:
    """Each strategy the space can sample that cannot act within the first rung's epochs: `axis name` ->
    the epochs a trial needs to have trained one epoch with it acting (its earliest acting epoch + 1)."""
    late: dict[str, int] = {}
    for sample in corner_samples(spec.space, spec.config.tasks) or [{}]:
        cfg = trial_config(spec.base, sample)
        for axis in AXES:
            choice = getattr(cfg.strategy, axis)
            cls = REGISTRIES[axis].get(choice.name)
            if cls is None:
                continue
            needs = cls.earliest_act(dict(choice.params)) + 1
            if needs > spec.search.grace_period:
                key = f"{axis} {choice.name}"
                late[key] = max(late.get(key, 0), needs)
    return late


def first_rung_warning(spec: SpaceSpec) -> str | None:
    """One line when the first rung comes before some strategy can act; None when it does not (or without
    early stopping: a fixed list of trials, or one rung at max_t)."""
    s = spec.search
    if s.grouping_mode != "search" or s.grace_period >= spec.max_t:
        return None
    late = late_strategies(spec)
    if not late:
        return None
    names = ", ".join(f"{k} (from epoch {v})" for k, v in sorted(late.items(), key=lambda kv: (-kv[1], kv[0])))
    return (f"warning: ASHA's first rung (search.grace_period {s.grace_period}) comes before {names} can act: "
            f"the cut among them there is noise; search.grace_period {max(late.values())} puts it after them")
