"""The report's figures: matplotlib (Agg, files only), each saved beside summary.md."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on workers or CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mtl_core import TASKS, keys

log = logging.getLogger(__name__)


def md_cell(text: str) -> str:
    """Text for a Markdown table cell."""
    return str(text).replace("|", "\\|")  # a partition's `|` would end a Markdown table cell


def strip_plot(ax, trials: pd.DataFrame, column: str, metric: str, title: str) -> None:
    groups = sorted(trials[column].dropna().astype(str).unique())
    ax.figure.set_size_inches(max(6.0, 1.1 * len(groups) + 2), 4.5)
    for i, g in enumerate(groups):
        values = trials.loc[trials[column].astype(str) == g, metric].dropna()
        jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(values))
        ax.scatter(np.full(len(values), i) + jitter, values, alpha=0.7)
        if len(values):
            ax.hlines(values.median(), i - 0.3, i + 0.3, color="black")
    ax.set_xticks(range(len(groups)), [wrap_label(g) for g in groups], fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(title, wrap=True)

def save_figure(fig, out: Path, name: str, alt: str) -> list[str]:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110, bbox_inches="tight")  # long titles, labels and outside legends stay in
    plt.close(fig)
    return [f"![{alt}]({name})", ""]

def wrap_label(text: str, width: int = 20) -> str:
    """A tick label on lines of about `width` characters, broken after `/`, `+` or a space."""
    out, line = [], ""
    for piece in re.findall(r"[^/+ ]+[/+ ]?", str(text)):
        if line and len(line) + len(piece) > width:
            out.append(line)
            line = ""
        line += piece
    return "\n".join(out + [line]) if line or not out else "\n".join(out)

def learning_curves(out: Path, history: pd.DataFrame, ranked: pd.DataFrame, metric: str, top: int) -> list[str]:
    if history.empty or ranked.empty or metric not in history:
        return []
    fig, ax = plt.subplots(figsize=(7, 4))
    for _, row in ranked.head(top).iterrows():
        h = history[history["trial_id"] == row["trial_id"]].sort_values("training_iteration")
        ax.plot(h["training_iteration"], h[metric], marker="o", label=row["label"])
    ax.set_xlabel("epochs trained (MLflow's step)")
    ax.set_ylabel(metric)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"learning curves of the top {min(top, len(ranked))} trials")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return ["## Learning curves", "", f"`{metric}` after each epoch of the top {min(top, len(ranked))} trials by "
            f"their best `{metric}` (ASHA stopped the short ones).", ""] + \
        save_figure(fig, out, "learning_curves.png", "learning curves")

def task_heatmap(out: Path, ranked: pd.DataFrame, top: int) -> list[str]:
    f1_cols = [keys.task("val", t) for t in TASKS if keys.task("val", t) in ranked]
    if not f1_cols or ranked.empty:
        return []
    best = ranked.head(top)
    fig, ax = plt.subplots(figsize=(1.2 * len(f1_cols) + 2, 0.5 * len(best) + 1.5))
    data = best[f1_cols].to_numpy(dtype=float)
    im = ax.imshow(data, cmap="viridis", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(len(f1_cols)), [c.split("/")[1] for c in f1_cols])
    ax.set_yticks(range(len(best)), list(best["label"]))
    for (i, j), v in np.ndenumerate(data):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white", fontsize=8)
    fig.colorbar(im, ax=ax, label="validation macro-F1")
    ax.set_title("per-task F1 of the top configurations")
    return ["## Per-task F1 of the top configurations", "",
            f"Validation macro-F1 of each task at each trial's best epoch, the top {len(best)} trials.", ""] + \
        save_figure(fig, out, "task_f1_heatmap.png", "per-task F1")

def affinity_heatmap(out: Path, history: pd.DataFrame, ranked: pd.DataFrame) -> list[str]:
    aff_cols = [c for c in history.columns if c.startswith("affinity/")] if not history.empty else []
    if not aff_cols or ranked.empty:
        return []
    measured = history.dropna(subset=aff_cols, how="all")
    measured = measured[measured["trial_id"].isin(ranked["trial_id"])]
    if measured.empty:
        return []
    tid = next(t for t in ranked["trial_id"] if t in set(measured["trial_id"]))
    last = measured[measured["trial_id"] == tid].sort_values("training_iteration").iloc[-1]
    tasks = [t for t in TASKS if any(c.startswith(f"affinity/{t}/") for c in aff_cols)]
    matrix = np.array([[last.get(keys.affinity(i, j), np.nan) if i != j else np.nan for j in tasks]
                       for i in tasks], dtype=float)
    bound = np.nanmax(np.abs(matrix)) or 1.0
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(matrix, cmap="RdBu", vmin=-bound, vmax=bound)
    ax.set_xticks(range(len(tasks)), tasks, rotation=30)
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("j (task whose loss changes)")
    ax.set_ylabel("i (task stepped on)")
    for (i, j), v in np.ndenumerate(matrix):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="Z(i -> j)")
    label = ranked.set_index("trial_id").at[tid, "label"]
    ax.set_title(f"inter-task affinity, {label} (last epoch)", wrap=True)
    return ["## Inter-task affinity", "", f"TAG's Z(i -> j) of `{md_cell(label)}` at its last epoch.", ""] + \
        save_figure(fig, out, "affinity.png", "inter-task affinity")
