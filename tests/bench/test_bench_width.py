"""The width bench's arithmetic (bench/bench_width.py): the best epoch it reports and its paired table."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_width", ROOT / "bench" / "bench_width.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_a_run_is_summarised_by_its_best_validation_epoch_and_the_test_of_its_weights():
    history = [{"val/avg_f1": 0.5, "time/epoch_s": 2.0}, {"val/avg_f1": 0.7, "time/epoch_s": 4.0},
               {"val/avg_f1": 0.6, "time/epoch_s": 3.0, "test/avg_f1": 0.65}]
    assert bench.summarise_run(history) == {"epoch_s": 3.0, "val_f1": 0.7, "test_f1": 0.65}


def test_the_table_pairs_each_width_with_the_encoders_by_seed():
    rows = [{"width": 0, "seed": s, "epoch_s": 20.0, "val_f1": 0.60 + s / 100, "test_f1": 0.50} for s in (0, 1, 2)]
    rows += [{"width": 128, "seed": s, "epoch_s": 5.0, "val_f1": 0.62 + s / 100, "test_f1": 0.50} for s in (0, 1, 2)]
    lines = bench.table(rows).splitlines()
    narrow = next(line for line in lines if line.startswith("| 128 "))
    cells = [c.strip() for c in narrow.strip("|").split("|")]
    assert cells[1] == "3" and cells[3] == "4.00x"
    assert cells[5].startswith("+0.020 [+0.020, +0.020]")  # the same +0.02 in every pair: no spread
    assert cells[7].startswith("+0.000")


def test_a_single_pair_has_no_interval():
    mean, lo, hi = bench.paired([0.01])
    assert mean == pytest.approx(0.01) and lo != lo and hi != hi
