"""``python -m jetstore.train`` / ``jetstore train``: train ParT on a jetstore dataset, or predict with it."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

from .model import SIZES, Inputs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jetstore train", description=__doc__)
    parser.add_argument("--data", required=True, help="jetstore dataset URL (local or s3://)")
    parser.add_argument("--config", required=True, help="weaver-core data-config (stats computed for it)")
    parser.add_argument("--output", default="runs/part", help="metrics, TensorBoard logs, predictions")
    parser.add_argument("--checkpoints", help="checkpoint directory or s3:// URL (default <output>/checkpoints)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--grad-accum", type=int, default=1, help="batches per optimizer step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader worker processes (0: the sampler's threads feed the loop in-process)")
    parser.add_argument("--threads", type=int, default=2, help="sampler CPU threads per loading process")
    parser.add_argument("--jets-per-epoch", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast (default: on with a GPU)")
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--regression-weight", type=float, default=1.0)
    parser.add_argument("--stop-at", type=int, help="end this run at this step (time-boxed jobs); resume later")
    parser.add_argument("--features", default="pf_features")
    parser.add_argument("--vectors", default="pf_vectors")
    parser.add_argument("--mask", default="pf_mask")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--predict", metavar="OUT.parquet", help="predict with the latest checkpoint instead")
    parser.add_argument("--predict-data", help="dataset to predict on (default: the held-out part of --data)")
    parser.add_argument("--holdout", type=float, default=0.1,
                        help="fraction of --data kept out of training and scored by --predict (0: none)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .loop import TrainOptions, predict, train

    args = build_parser().parse_args(argv)
    options = TrainOptions(
        data=args.predict_data or args.data if args.predict else args.data, config=args.config, output=args.output,
        checkpoints=args.checkpoints, steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
        lr=args.lr, weight_decay=args.weight_decay, size=args.size, workers=args.workers, threads=args.threads,
        jets_per_epoch=args.jets_per_epoch, seed=args.seed, amp=args.amp, checkpoint_every=args.checkpoint_every,
        log_every=args.log_every, regression_weight=args.regression_weight, stop_at=args.stop_at,
        progress=not args.no_progress, holdout=args.holdout, predict_split="all" if args.predict_data else "holdout",
        inputs=Inputs(args.features, args.vectors, args.mask),
    )
    summary = predict(options, args.predict) if args.predict else train(options)
    # strict JSON: a rejection no background jet allows to measure (infinite) or an AUC without jets of both
    # kinds (NaN) is null
    json.dump({k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in summary.items()},
              sys.stdout, indent=1, allow_nan=False)
    print()
    return 0
