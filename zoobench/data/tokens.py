"""Language modeling on nanoGPT's token files: random blocks of uint16 GPT-2 tokens read per batch.

OpenWebText's train.bin holds 9B tokens (17 GB), so nothing is loaded: each batch copies just its
blocks out of a memory map, as nanoGPT's get_batch does, and the map is reopened per batch as there
(a long-lived np.memmap grows the process's memory as pages are touched; reopening also keeps the
object cheap to send to worker processes). An "epoch" is nominal: as many random blocks as train.bin
holds whole ones. Evaluation always reads the same blocks, so every model of a zoo is scored on the
same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from zoobench.data.catalog import DatasetInfo
from zoobench.errors import ZoobenchError

FILES = {"train": "train.bin", "test": "val.bin"}  # split -> file in DATA_ROOT/<dataset name>/
EVAL_BATCHES = 20
EVAL_BATCH_SIZE = 8
EVAL_SEED = 0


@dataclass(frozen=True)
class TokenFile:
    path: Path
    tokens: int

    def blocks(self, block_size: int) -> int:
        """Whole blocks of block_size inputs plus the one target token past the last."""
        return (self.tokens - 1) // block_size


@dataclass(frozen=True)
class TokenBlocks:
    examplewise_loss: ClassVar[bool] = True  # the mean cross-entropy of its examples (see the protocol)
    train: TokenFile
    test: TokenFile
    block_size: int
    device: torch.device = torch.device("cpu")

    def to(self, device: torch.device | str) -> TokenBlocks:
        return replace(self, device=torch.device(device))

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, self.train.blocks(self.block_size) // batch_size)

    def batches(self, batch_size: int, generator: torch.Generator, augment: Callable | None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One nominal epoch of (x, y) int64 (B, T) batches at offsets drawn from `generator`."""
        if augment is not None:
            raise ZoobenchError("token data cannot be augmented: remove the zoo's [data.augmentation] table")
        return (self._batch(self.train, self._offsets(self.train, batch_size, generator))
                for _ in range(self.steps_per_epoch(batch_size)))

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean next-token cross-entropy of a batch, and the fraction of tokens predicted exactly."""
        x, y = batch
        logits = model(x)  # (B, T, vocab)
        accuracy = (logits.argmax(-1) == y).float().mean()
        return F.cross_entropy(logits.float().flatten(0, 1), y.flatten()), {"acc": accuracy}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str = "test") -> dict[str, float]:
        """Mean loss and token accuracy on up to EVAL_BATCHES x EVAL_BATCH_SIZE blocks, the same on every call."""
        loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        tokens = 0
        for x, y in self._evaluation_batches(split):
            logits = model(x)
            loss += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
            correct += (logits.argmax(-1) == y).sum()
            tokens += y.numel()
        return {"loss": loss.item() / tokens, "acc": correct.item() / tokens}

    def chance(self, split: str = "test") -> float:
        """The share of the most frequent next token among the tokens `evaluate` scores."""
        counts = sum(torch.bincount(y.flatten().cpu(), minlength=65536) for _, y in self._evaluation_batches(split))
        return counts.max().item() / counts.sum().item()

    def _evaluation_batches(self, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The blocks `evaluate` scores: up to EVAL_BATCHES batches at offsets fixed by EVAL_SEED."""
        file = {"train": self.train, "test": self.test}[split]
        generator = torch.Generator().manual_seed(EVAL_SEED)
        for _ in range(min(EVAL_BATCHES, max(1, file.blocks(self.block_size) // EVAL_BATCH_SIZE))):
            yield self._batch(file, self._offsets(file, EVAL_BATCH_SIZE, generator))

    def fixed_batches(self, split: str, count: int, size: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`count` batches of `size` blocks at offsets fixed by `seed`, the same for every model."""
        file = {"train": self.train, "test": self.test}[split]
        generator = torch.Generator().manual_seed(seed)
        return [self._batch(file, self._offsets(file, size, generator)) for _ in range(count)]

    def _offsets(self, file: TokenFile, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(file.tokens - self.block_size, (count,), generator=generator)

    def _batch(self, file: TokenFile, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Blocks of block_size + 1 tokens at the offsets; y is x shifted by one token."""
        data = np.memmap(file.path, dtype=np.uint16, mode="r")
        windows = offsets.numpy()[:, None] + np.arange(self.block_size + 1)
        blocks = torch.from_numpy(data[windows].astype(np.int64)).to(self.device)
        return blocks[:, :-1], blocks[:, 1:]


def load(info: DatasetInfo, options: dict[str, Any], data_root: Path | None) -> TokenBlocks:
    block_size = options["block_size"]
    if data_root is None:
        raise ZoobenchError(f"dataset {info.name} needs files and no data root was given: it expects {info.obtain}; "
                            "pass the folder that holds it with --data-root or ZOOBENCH_DATA")
    train, test = (_token_file(info, data_root, FILES[split], block_size) for split in ("train", "test"))
    return TokenBlocks(train, test, block_size)


def check(info: DatasetInfo, options: dict[str, Any], data_root: Path | None) -> None:
    """Loading only opens the token files, so it is the cheap check itself."""
    load(info, options, data_root)


def download(info: DatasetInfo, data_root: Path) -> None:
    """There is nothing to fetch: the token files are made by tokenizing OpenWebText."""
    raise ZoobenchError(f"zoobench cannot download {info.name}: run nanoGPT's data/openwebtext/prepare.py (it "
                        f"downloads and tokenizes OpenWebText) and put its train.bin and val.bin in "
                        f"{data_root / info.name}/")


def _token_file(info: DatasetInfo, data_root: Path, name: str, block_size: int) -> TokenFile:
    path = data_root / info.name / name
    if not path.is_file():
        raise ZoobenchError(f"dataset {info.name} not found: {path} does not exist (expected "
                            f"{info.obtain.replace('DATA_ROOT', str(data_root))}); pass the folder that holds it "
                            "with --data-root or ZOOBENCH_DATA")
    try:
        tokens = len(np.memmap(path, dtype=np.uint16, mode="r"))
    except ValueError as error:  # empty, or an odd number of bytes
        raise ZoobenchError(f"could not read {path} as uint16 tokens: {error}; make it again with nanoGPT's "
                            "data/openwebtext/prepare.py") from error
    if tokens <= block_size:
        raise ZoobenchError(f"{path} holds {tokens} tokens, too few for one block of block_size {block_size} "
                            "plus its target token")
    return TokenFile(path, tokens)
