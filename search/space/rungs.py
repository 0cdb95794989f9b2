"""ASHA's rungs: where they fall (`rungs`), the epochs a search is expected to spend on them, and the first
rung after every strategy the space can sample has acted.

A rung compares trials at a budget of epochs. Some strategies train exactly like their axis's plain value
until some epoch (DWA until two epochs of losses exist, an assessed curriculum until its assessment, DSG
until its first stop); a rung before that compares them by scores they had no part in, so among them the
search's cut is noise. `search.grace_period: auto` (the default) puts the first rung at the first budget
where every one of them has trained an epoch acting, and an explicit grace period earlier than that is
refused. The price is epochs, since every trial runs to the first rung (docs/spaces.md#the-first-rung).
"""
from __future__ import annotations

from mtl_core.config import Config, ConfigError
from mtl_core.strategies import AXES, REGISTRIES


def rungs(grace_period: int, reduction_factor: int, max_t: int) -> list[int]:
    """ASHA's milestones in epochs (grace, grace * rf, ...) below max_t, then max_t itself: a trial can be
    stopped at each but the last, where it ends anyway."""
    out, b = [], max(1, grace_period)
    while b < max_t:
        out.append(b)
        b *= max(2, reduction_factor)
    return out + [max_t]


def expected_epochs(num_samples: int, max_t: int, grace_period: int, reduction_factor: int) -> int:
    """The epochs an ASHA search is expected to spend: every trial to the first rung, a 1/rf share of them on
    to the next, and so on to max_t (the estimate behind the ETA; ASHA's real count varies around it)."""
    at, eta = rungs(grace_period, reduction_factor, max_t), max(2, reduction_factor)
    per_trial = sum((r - (at[i - 1] if i else 0)) / eta ** i for i, r in enumerate(at))
    return max(1, round(num_samples * per_trial))


def acting_epochs(configs: list[Config]) -> dict[str, int]:
    """Each strategy of these configurations (a space's corners: search.space.settings.SpaceSpec.corner_configs) that
    trains like its axis's plain value in its first epoch: `axis name` -> the epochs a trial needs to have
    trained one epoch with it acting (its earliest acting epoch + 1), the worst corner of its parameters' ranges."""
    out: dict[str, int] = {}
    for cfg in configs:
        for axis in AXES:
            choice = getattr(cfg.strategy, axis)
            cls = REGISTRIES[axis].get(choice.name)
            if cls is None:
                continue
            needs = cls.earliest_act(dict(choice.params)) + 1
            if needs > 1:
                key = f"{axis} {choice.name}"
                out[key] = max(out.get(key, 0), needs)
    return out


def late_strategies(spec) -> dict[str, int]:
    """The strategies of `acting_epochs` that cannot act within the first rung's epochs."""
    return {k: v for k, v in acting_epochs(spec.corner_configs).items() if v > spec.search.grace_period}


def derived_grace(configs: list[Config], max_t: int) -> int:
    """The smallest first rung after every strategy of these configurations has acted, at most max_t (a rung
    at max_t stops nothing: the search then runs every trial to the end)."""
    return max(1, min(max_t, max(acting_epochs(configs).values(), default=1)))


def _stops_early(spec) -> bool:
    """Whether ASHA has a rung below max_t (a fixed list of trials has none)."""
    return spec.search.grouping_mode == "search" and spec.search.grace_period < spec.max_t


def check_first_rung(spec) -> None:
    """Refuse (ConfigError) a space's explicit first rung that comes before some sampleable strategy can act."""
    late = late_strategies(spec) if _stops_early(spec) else {}
    if not late:
        return
    names = ", ".join(f"{k} (acts in epoch {v})" for k, v in sorted(late.items(), key=lambda kv: (-kv[1], kv[0])))
    raise ConfigError(f"search.grace_period: {spec.search.grace_period} puts ASHA's first rung before {names}, "
                      f"so the cut among them would be noise; use {min(spec.max_t, max(late.values()))} "
                      f"(or auto, which derives it), or leave them out of the space")
