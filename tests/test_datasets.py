"""Dataset loaders on tiny fabricated files in the real formats: what is read back, and how they fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fabricate import fabricate
from zoobench.data import DATASETS
from zoobench.data.in_memory import InMemoryClassification
from zoobench.errors import ZoobenchError
from zoobench.registry import load_target

VISION = ["cifar10", "cifar100", "svhn", "stl10", "tinyimagenet"]
ON_DISK = [*VISION, "openwebtext"]
DOWNLOADABLE = ["cifar10", "cifar100", "svhn", "stl10"]

# a file each loader needs, for the test split (so the train split's files are all present)
TEST_SPLIT_FILE = {
    "cifar10": "cifar-10-batches-py/test_batch",
    "cifar100": "cifar-100-python/test",
    "svhn": "test_32x32.mat",
    "stl10": "stl10_binary/test_y.bin",
    "tinyimagenet": "tiny-imagenet-200/val/val_annotations.txt",
    "openwebtext": "openwebtext/val.bin",
}
CORRUPTIBLE = {
    "cifar10": "cifar-10-batches-py/data_batch_2",
    "cifar100": "cifar-100-python/train",
    "svhn": "test_32x32.mat",
    "stl10": "stl10_binary/train_X.bin",
    "tinyimagenet": "tiny-imagenet-200/val/images/val_3.JPEG",
}


def load(name: str, root: Path | None, **options):
    """Through the registry, as the trainer loads data."""
    info = DATASETS.get(name)
    return load_target(info.loader, f"dataset '{name}'")(info, {**info.options, **options}, root)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def truncate(path: Path) -> None:
    content = path.read_bytes()
    path.write_bytes(content[:len(content) * 2 // 3 + 7])  # not a whole number of records either


# --- images -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", VISION)
def test_images_and_labels_come_back_as_written(name: str, tmp_path: Path) -> None:
    from torchvision.transforms.v2.functional import resize

    written = fabricate(name, tmp_path)
    data = load(name, tmp_path)
    info = DATASETS.get(name)
    assert isinstance(data, InMemoryClassification)
    for x, y, x_written, y_written in ((data.x_train, data.y_train, written.x_train, written.y_train),
                                       (data.x_test, data.y_test, written.x_test, written.y_test)):
        assert x.dtype == torch.uint8 and x.is_contiguous() and x.shape == (len(y_written), *info.input_shape)
        assert y.dtype == torch.int64 and y.tolist() == y_written.tolist()
        assert 0 <= int(y.min()) and int(y.max()) < info.num_outputs
        expected = torch.from_numpy(x_written)
        if name == "stl10":  # the transfer target of CIFAR-10 models: 96x96 resized to 32x32
            expected = resize(expected, [32, 32], antialias=True)
        if name == "tinyimagenet":  # JPEG is lossy
            assert (x.float() - expected.float()).abs().mean(dim=(1, 2, 3)).max() < 12
        else:
            assert torch.equal(x, expected)


@pytest.mark.parametrize("name", VISION)
def test_mean_and_std_are_per_channel_over_the_train_images(name: str, tmp_path: Path) -> None:
    fabricate(name, tmp_path)
    data = load(name, tmp_path)
    scaled = data.x_train.float() / 255
    assert data.mean.shape == data.std.shape == (3,) and data.mean.dtype == data.std.dtype == torch.float32
    torch.testing.assert_close(data.mean, scaled.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(data.std, scaled.std(dim=(0, 2, 3)))


def test_svhn_label_10_is_digit_0(tmp_path: Path) -> None:
    from scipy.io import loadmat

    fabricate("svhn", tmp_path)
    stored = loadmat(tmp_path / "train_32x32.mat")["y"].squeeze()
    loaded = load("svhn", tmp_path).y_train.numpy()
    assert (stored == 10).any() and set(stored) <= set(range(1, 11))
    assert (loaded == np.where(stored == 10, 0, stored)).all()


def test_tinyimagenet_val_labels_use_the_train_class_mapping(tmp_path: Path) -> None:
    fabricate("tinyimagenet", tmp_path)
    base = tmp_path / "tiny-imagenet-200"
    wnids = (base / "wnids.txt").read_text().split()
    assert wnids != sorted(wnids)  # the file's own order must not be the index order
    classes = sorted(wnids)
    annotated = [line.split("\t")[1] for line in (base / "val" / "val_annotations.txt").read_text().splitlines()]
    per_class = [len(list((base / "train" / wnid / "images").iterdir())) for wnid in classes]

    data = load("tinyimagenet", tmp_path)
    assert data.y_test.tolist() == [classes.index(wnid) for wnid in annotated]
    assert data.y_train.tolist() == [i for i, count in enumerate(per_class) for _ in range(count)]
    for label in data.y_test.unique():  # same class, same colour: the splits agree on what a label means
        train_colour = data.x_train[data.y_train == label][1:].float().mean(dim=(0, 2, 3))  # [0] may be gray
        test_colour = data.x_test[data.y_test == label].float().mean(dim=(0, 2, 3))
        assert (train_colour - test_colour).abs().max() < 15


def test_tinyimagenet_classes_come_from_wnids_not_from_folders(tmp_path: Path) -> None:
    fabricate("tinyimagenet", tmp_path)
    expected = load("tinyimagenet", tmp_path)
    train = tmp_path / "tiny-imagenet-200" / "train"
    stray = train / "n00000000" / "images"  # not in wnids.txt, and sorts before every class that is
    stray.mkdir(parents=True)
    shutil.copy(next((train / sorted(p.name for p in train.iterdir())[-1] / "images").iterdir()), stray / "x.JPEG")
    data = load("tinyimagenet", tmp_path)
    assert torch.equal(data.y_train, expected.y_train) and torch.equal(data.y_test, expected.y_test)


# --- missing and damaged files ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ON_DISK)
def test_no_data_root_says_how_to_give_one(name: str) -> None:
    with pytest.raises(ZoobenchError) as error:
        load(name, None)
    message = one_line(error)
    assert name in message and "--data-root" in message and "ZOOBENCH_DATA" in message
    if name in DOWNLOADABLE:
        assert f"zoobench data download {name}" in message


@pytest.mark.parametrize("name", ON_DISK)
def test_a_missing_file_is_named(name: str, tmp_path: Path) -> None:
    fabricate(name, tmp_path)
    (tmp_path / TEST_SPLIT_FILE[name]).unlink()
    with pytest.raises(ZoobenchError) as error:
        load(name, tmp_path)
    message = one_line(error)
    assert str(tmp_path / TEST_SPLIT_FILE[name]) in message
    assert "DATA_ROOT" not in message and str(tmp_path) in message  # the expected layout, at the real root


@pytest.mark.parametrize("name", VISION)
def test_an_empty_data_root_names_what_is_expected(name: str, tmp_path: Path) -> None:
    with pytest.raises(ZoobenchError) as error:
        load(name, tmp_path)
    message = one_line(error)
    assert DATASETS.get(name).obtain.replace("DATA_ROOT", str(tmp_path)) in message


@pytest.mark.parametrize("name", VISION)
def test_a_truncated_file_is_a_one_line_error_naming_it(name: str, tmp_path: Path) -> None:
    fabricate(name, tmp_path)
    truncate(tmp_path / CORRUPTIBLE[name])
    with pytest.raises(ZoobenchError) as error:
        load(name, tmp_path)
    assert CORRUPTIBLE[name].rsplit("/", 1)[-1] in one_line(error)


def test_labels_out_of_range_are_an_error(tmp_path: Path) -> None:
    fabricate("stl10", tmp_path)
    labels = tmp_path / "stl10_binary" / "test_y.bin"
    labels.write_bytes(b"\x00" + labels.read_bytes()[1:])  # STL-10 counts from 1
    with pytest.raises(ZoobenchError, match="labels range") as error:
        load("stl10", tmp_path)
    assert "test_y.bin" in one_line(error)


# --- downloading ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DOWNLOADABLE)
def test_download_asks_torchvision_for_the_files(name: str, tmp_path: Path, monkeypatch) -> None:
    """No network here: record what torchvision would fetch; its md5 check then finds nothing and fails."""
    import torchvision.datasets as tv

    from zoobench.data import vision

    module, function, url = {
        "cifar10": ("cifar", "download_and_extract_archive", tv.CIFAR10.url),
        "cifar100": ("cifar", "download_and_extract_archive", tv.CIFAR100.url),
        "svhn": ("svhn", "download_url", tv.SVHN.split_list["train"][0]),
        "stl10": ("stl10", "download_and_extract_archive", tv.STL10.url),
    }[name]
    fetched = []
    monkeypatch.setattr(getattr(tv, module), function, lambda url, root, *args, **kwargs: fetched.append((url, root)))
    root = tmp_path / "data"
    with pytest.raises(ZoobenchError) as error:
        vision.download(DATASETS.get(name), root)
    assert fetched == [(url, root)] and root.is_dir()
    assert f"downloading {name} into {root} failed" in one_line(error)


def test_tinyimagenet_download_says_where_the_zip_is(tmp_path: Path) -> None:
    from zoobench.data import vision

    with pytest.raises(ZoobenchError) as error:
        vision.download(DATASETS.get("tinyimagenet"), tmp_path)
    assert "http://cs231n.stanford.edu/tiny-imagenet-200.zip" in one_line(error)


def test_openwebtext_download_points_to_nanogpt(tmp_path: Path) -> None:
    from zoobench.data import tokens

    with pytest.raises(ZoobenchError) as error:
        tokens.download(DATASETS.get("openwebtext"), tmp_path)
    assert "prepare.py" in one_line(error) and str(tmp_path / "openwebtext") in str(error.value)


# --- tokens ----------------------------------------------------------------------------------------------

BLOCK = 16


@pytest.fixture
def tokens(tmp_path: Path):
    written = fabricate("openwebtext", tmp_path)
    return written, load("openwebtext", tmp_path, block_size=BLOCK)


def bigram_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Embedding(97, 97)  # (B, T) tokens -> (B, T, vocab) logits


def test_token_batches_are_blocks_of_the_file_and_their_next_tokens(tokens) -> None:
    written, data = tokens
    steps = data.steps_per_epoch(8)
    assert steps == (len(written.train) - 1) // BLOCK // 8
    batches = list(data.batches(8, torch.Generator().manual_seed(0), None))
    assert len(batches) == steps
    windows = {tuple(w) for w in np.lib.stride_tricks.sliding_window_view(written.train.astype(np.int64), BLOCK + 1)}
    for x, y in batches:
        assert x.shape == y.shape == (8, BLOCK) and x.dtype == y.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])
        assert all(tuple(row) in windows for row in torch.cat([x, y[:, -1:]], dim=1).tolist())


def test_token_batches_follow_the_generator(tokens) -> None:
    _, data = tokens

    def epoch(seed: int) -> list[torch.Tensor]:
        return [x for x, _ in data.batches(4, torch.Generator().manual_seed(seed), None)]

    first, again, other = epoch(1), epoch(1), epoch(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_tokens_cannot_be_augmented(tokens) -> None:
    _, data = tokens
    with pytest.raises(ZoobenchError, match="augment"):
        data.batches(4, torch.Generator(), lambda batch: batch)


def test_token_loss_is_a_differentiable_mean_with_accuracy(tokens) -> None:
    _, data = tokens
    model = bigram_model()
    batch = next(iter(data.batches(4, torch.Generator().manual_seed(0), None)))
    loss, metrics = data.loss(model, batch)
    assert loss.dim() == 0 and set(metrics) == {"acc"} and metrics["acc"].dim() == 0
    assert 0 <= metrics["acc"].item() <= 1
    loss.backward()
    assert model.weight.grad is not None


def test_evaluation_reads_the_same_tokens_every_time(tokens) -> None:
    _, data = tokens
    model = bigram_model()
    first = data.evaluate(model)
    torch.manual_seed(123)  # the global generator must not matter
    assert data.evaluate(model) == first
    assert set(first) == {"loss", "acc"} and np.isfinite(first["loss"]) and 0 <= first["acc"] <= 1
    assert data.evaluate(model, split="train") != first


def test_token_batches_go_to_the_device(tokens) -> None:
    _, data = tokens
    x, y = next(iter(data.to("meta").batches(4, torch.Generator().manual_seed(0), None)))
    assert x.device.type == y.device.type == "meta"


def test_a_block_longer_than_the_file_is_an_error(tmp_path: Path) -> None:
    fabricate("openwebtext", tmp_path, n_val=100)
    with pytest.raises(ZoobenchError, match="too few") as error:
        load("openwebtext", tmp_path, block_size=BLOCK * 10)
    assert "val.bin" in one_line(error)


def test_a_token_file_with_an_odd_size_is_an_error(tmp_path: Path) -> None:
    fabricate("openwebtext", tmp_path)
    train = tmp_path / "openwebtext" / "train.bin"
    train.write_bytes(train.read_bytes() + b"\x00")
    with pytest.raises(ZoobenchError) as error:
        load("openwebtext", tmp_path, block_size=BLOCK)
    assert str(train) in one_line(error)
