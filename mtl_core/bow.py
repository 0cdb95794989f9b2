"""The bag-of-words floor: TF-IDF + logistic regression per task on the clips' text (scikit-learn).

One model per task, trained on the train split, its regularisation C chosen on val by macro-F1, then
evaluated on test. A neural configuration that does not beat this on a dataset has learned nothing the
words alone would not give.

    python -m mtl_core.bow /data/comic_mischief [--derive-binary]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from mtl_core import TASKS, keys
from mtl_core.cli import fail
from mtl_core.data.arrays import load_split
from mtl_core.data.layout import DataError
from mtl_core.metrics import binary_task_metrics, headline_tasks

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def bag_of_words_floor(root: Path, tasks: tuple[str, ...] = TASKS, *, derive_binary: bool = False,
                       cache_dir: Path | None = None, files: dict | None = None,
                       predictions: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """`test/<task>/f1` (macro-F1), `val/<task>/f1`, the chosen `C/<task>`, and `test/avg_f1`. With
    `predictions` (a dict), each task's test predictions go into it, in the test split's clip order (the
    order of a run's own test predictions), so the floor can be compared clip by clip."""
    splits = {s: load_split(Path(root), s, cache_dir=cache_dir, derive_binary=derive_binary, files=files)
              for s in ("train", "val", "test")}
    tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    x = {"train": tfidf.fit_transform(splits["train"].texts)}
    x.update({s: tfidf.transform(splits[s].texts) for s in ("val", "test")})
    out: dict[str, float] = {}
    for task in tasks:
        j = TASKS.index(task)
        y = {s: splits[s].labels[:, j].astype(np.int64) for s in splits}
        keep = y["train"] >= 0
        if len(np.unique(y["train"][keep])) < 2:  # one class only: nothing to learn
            continue
        best = None
        for c in C_GRID:
            model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
            model.fit(x["train"][keep], y["train"][keep])
            score = binary_task_metrics(y["val"], model.predict(x["val"]))["f1"]
            if best is None or score > best[0]:
                best = (score, c, model)
        score, c, model = best
        out[keys.task("val", task)], out[f"C/{task}"] = score, c
        predicted = model.predict(x["test"])
        out[keys.task("test", task)] = binary_task_metrics(y["test"], predicted)["f1"]
        if predictions is not None:
            predictions[task] = predicted.astype(np.int8)
    scores = [out[keys.task("test", t)] for t in headline_tasks(tasks, derive_binary)
              if keys.task("test", t) in out and np.isfinite(out[keys.task("test", t)])]
    out[keys.average("test")] = float(np.mean(scores)) if scores else float("nan")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mtl_core.bow", description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, help="dataset folder")
    p.add_argument("--derive-binary", action="store_true", help="binary = OR of the four labels where `y` is missing")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    args = p.parse_args(argv)
    if not args.root.is_dir():
        return fail(f"{args.root}: dataset folder not found")
    try:
        floor = bag_of_words_floor(args.root, tuple(args.tasks), derive_binary=args.derive_binary)
    except DataError as exc:
        return fail(str(exc), code=1)
    print(json.dumps(floor, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
