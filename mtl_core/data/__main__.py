"""python -m mtl_core.data synth|check|cache ..."""
from __future__ import annotations

import sys
from pathlib import Path

from mtl_core.cli import OneLineParser, fail, setup_logging


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m mtl_core.data", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth", help="write a synthetic dataset in the real layout")
    s.add_argument("out_dir", type=Path)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n-train", type=int, default=400)
    s.add_argument("--n-val", type=int, default=120)
    s.add_argument("--n-test", type=int, default=120)
    c = sub.add_parser("check", help="validate a dataset folder and print a summary")
    c.add_argument("data_dir", type=Path)
    c.add_argument("--encoder", default="minilm", help="encoder whose vocabulary the ids should match")
    k = sub.add_parser("cache", help="build the columnar feature cache that training reads")
    k.add_argument("data_dir", type=Path)
    k.add_argument("--cache-dir", type=Path, default=None)
    k.add_argument("--derive-binary", action="store_true")
    k.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = p.parse_args(argv)
    setup_logging()

    if args.cmd == "synth":
        if min(args.n_train, args.n_val, args.n_test) <= 0:
            return fail("--n-train/--n-val/--n-test: must be positive")
        from mtl_core.data.synth import write_synthetic

        out = write_synthetic(args.out_dir, args.seed, args.n_train, args.n_val, args.n_test)
        print(f"wrote a synthetic dataset to {out}")
        return 0

    if not args.data_dir.is_dir():
        return fail(f"{args.data_dir}: dataset folder not found")
    if args.cmd == "check":
        from mtl_core.data.check import check_dataset
        from mtl_core.model.text_encoder import EncoderNotFound, load_tokenizer

        try:
            tokenizer = load_tokenizer(args.encoder)
        except EncoderNotFound as exc:
            return fail(f"--encoder: {exc}")
        summary, warnings, problems = check_dataset(args.data_dir, tokenizer, args.encoder)
        for line in summary:
            print(line)
        for line in warnings:
            print(f"warning: {line}")
        for line in problems:
            print(f"problem: {line}", file=sys.stderr)
        print("usable" if not problems else f"not usable: {len(problems)} problem(s)")
        return 0 if not problems else 1

    from mtl_core.data.arrays import build_cache
    from mtl_core.data.layout import DataError

    try:
        folder = build_cache(args.data_dir, cache_dir=args.cache_dir, derive_binary=args.derive_binary,
                             force=args.force)
    except DataError as exc:
        return fail(str(exc), code=1)
    print(f"columnar cache up to date in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
