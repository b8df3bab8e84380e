"""GPU check: ParT steps/s fed by jetstore vs the same model fed one synthetic in-memory batch.

    python bench/gpu_check.py --data DATASET --config CFG.yaml [--seconds 120] [--workers 2] [--size full]

Both runs use the trainer's model, optimizer and bf16 autocast (on CUDA); the synthetic run repeats one
batch already on the device, so the ratio is the fraction of the GPU's speed the data pipeline sustains.
Goal (train/k8s issue): ≥ 95%. Runs on CPU too (as a smoke test), where the ratio means little.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from jetstore.train.loop import Run, TrainOptions, build


def steps_per_second(run: Run, batches, device, seconds: float, amp: bool) -> float:
    model, optimizer = run.model, run.optimizer
    model.train()
    steps, start = 0, None
    for batch in batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits, regression = run.network(model, batch)
            loss = run.objective.loss(logits, regression, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        steps += 1
        if start is None and steps == 10:  # warm-up done
            start, steps = time.perf_counter(), 0
        if start is not None and time.perf_counter() - start >= seconds:
            break
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--size", default="full")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    options = TrainOptions(data=args.data, config=args.config, batch_size=args.batch_size, size=args.size,
                           workers=args.workers, jets_per_epoch=10**7)
    run = build(options, device)
    dataset = run.dataset
    amp = device.type == "cuda"
    one = {k: v.to(device) for k, v in next(iter(dataset)).items()}
    synthetic = steps_per_second(run, itertools.repeat(one), device, args.seconds, amp)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=args.workers,
                                         pin_memory=device.type == "cuda")
    fed = steps_per_second(run, iter(loader), device, args.seconds, amp)
    print(json.dumps({"device": torch.cuda.get_device_name() if amp else "cpu", "workers": args.workers,
                      "batch_size": args.batch_size, "size": args.size, "jetstore_steps_per_s": fed,
                      "synthetic_steps_per_s": synthetic, "ratio": fed / synthetic,
                      "jets_per_s": fed * args.batch_size}, indent=1))


if __name__ == "__main__":
    main()
