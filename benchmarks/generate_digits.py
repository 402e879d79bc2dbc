"""Zoo generation: zoobench vs a plain per-model PyTorch loop with the same recipe, side by side.

The plain loop is what the published zoo code does per model (a DataLoader over the training set,
SGD + OneCycle stepped per batch, the recipe's gradient-norm clip, a test evaluation per epoch, a checkpoint at the stored epochs),
one model after another in one process. Both train the same digits_mlp grid (optionally a part of
it); the script prints the wall time of each and their ratio.

    python benchmarks/generate_digits.py                 # the full 126-model grid (a few minutes)
    python benchmarks/generate_digits.py --widths 16,64 --batch-sizes 32,128
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import zoobench
from zoobench.spec.grid import model_keys, model_spec
from zoobench.data import load_data
from zoobench.models import build_model, initialize


def plain_loop(spec, keys, out: Path) -> float:
    started = time.perf_counter()
    for key in keys:
        recipe = model_spec(spec, key)
        data = load_data(recipe.recipe())
        train = TensorDataset(data.normalize(data.x_train), data.y_train)
        test_x, test_y = data.normalize(data.x_test), data.y_test
        torch.manual_seed(key.seed)
        model = build_model(recipe.recipe())
        initialize(model, recipe.training.init)
        loader = DataLoader(train, batch_size=recipe.training.batch_size, shuffle=True)
        t = recipe.training
        optimizer = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, t.lr, epochs=t.epochs, steps_per_epoch=len(loader))
        for epoch in range(1, t.epochs + 1):
            model.train()
            for x, y in loader:
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                if t.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                optimizer.step()
                schedule.step()
            model.eval()
            with torch.no_grad():
                F.cross_entropy(model(test_x), test_y).item()
            if epoch in spec.stored_epochs:
                torch.save(model.state_dict(), out / f"{key.id}-{epoch}.pt")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", help="comma-separated subset of the grid's widths")
    parser.add_argument("--batch-sizes", help="comma-separated subset of the grid's batch sizes")
    parser.add_argument("--workers", type=int, default=None, help="zoobench worker processes (default: one per core)")
    args = parser.parse_args()
    spec = zoobench.load_spec("digits_mlp")
    split = lambda text: text.split(",") if text else None  # noqa: E731
    keys = model_keys(spec, split(args.widths), split(args.batch_sizes))
    with tempfile.TemporaryDirectory() as folder:
        plain = plain_loop(spec, keys, Path(folder))
        report = zoobench.generate(spec, zoobench.Store(folder), loads=split(args.widths),
                                   temperatures=split(args.batch_sizes),
                                   execution=zoobench.Execution(workers=args.workers, progress=False))
    print(f"{len(keys)} digits_mlp models, {torch.get_num_threads()} torch threads")
    print(f"plain per-model loop: {plain:7.1f} s")
    print(f"zoobench generate:    {report.seconds:7.1f} s  (workers: {args.workers or 'one per core'})")
    print(f"speed-up: {plain / report.seconds:.2f}x")


if __name__ == "__main__":
    main()
