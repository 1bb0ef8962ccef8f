"""PyTorch dataset and loader: letterbox, mosaic, affine, HSV jitter, optional flips; seeded per sample.

Every training sample draws its randomness from ``numpy.random.default_rng((seed, epoch, index))``,
so a batch does not depend on the number of worker processes, and resuming at epoch N replays
exactly what an uninterrupted run would have seen. Shuffling is seeded by ``seed + epoch`` (the
same rule as ``DistributedSampler``, which replaces :class:`EpochShuffleSampler` under DDP).

The loader's sampler hands out ``(epoch, index)`` keys (:class:`EpochKeyedSampler`), so the epoch
travels with each request and worker processes live for the whole run instead of being re-forked
every epoch (seconds per epoch with many workers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from stopsign.edge.vision.letterbox import letterbox
from stopsign.train import augment
from stopsign.train.config import Hyp
from stopsign.train.dataset import ImageStore, Split


@dataclass
class Sample:
    """One item: image (3, s, s) uint8 RGB, labels (n, 5) ``cls cx cy w h`` normalised to the input."""

    image: torch.Tensor
    labels: torch.Tensor
    index: int


def _to_normalised(labels: np.ndarray, size: int) -> np.ndarray:
    """(n, 5) ``cls x1 y1 x2 y2`` pixels -> ``cls cx cy w h`` normalised by ``size``."""
    out = np.empty_like(labels, dtype=np.float32)
    out[:, 0] = labels[:, 0]
    out[:, 1] = (labels[:, 1] + labels[:, 3]) / 2 / size
    out[:, 2] = (labels[:, 2] + labels[:, 4]) / 2 / size
    out[:, 3] = (labels[:, 3] - labels[:, 1]) / size
    out[:, 4] = (labels[:, 4] - labels[:, 2]) / size
    return out


def _to_pixels(
    labels: np.ndarray, w: float, h: float, scale: float | tuple[float, float] = 1.0, pad: tuple = (0, 0)
) -> np.ndarray:
    """(n, 5) ``cls cx cy w h`` normalised to an image of (w, h) -> ``cls x1 y1 x2 y2`` pixels, then
    scaled by ``scale`` (one number, or (x, y) for a stretch resize) and shifted by ``pad`` (x, y)."""
    sx, sy = scale if isinstance(scale, tuple) else (scale, scale)
    out = np.empty_like(labels, dtype=np.float32)
    out[:, 0] = labels[:, 0]
    out[:, 1] = (labels[:, 1] - labels[:, 3] / 2) * w * sx + pad[0]
    out[:, 2] = (labels[:, 2] - labels[:, 4] / 2) * h * sy + pad[1]
    out[:, 3] = (labels[:, 1] + labels[:, 3] / 2) * w * sx + pad[0]
    out[:, 4] = (labels[:, 2] + labels[:, 4] / 2) * h * sy + pad[1]
    return out


class YoloDataset(Dataset):
    """Training (augmented) or validation (letterbox only) samples of one split.

    ``resize``: how validation samples reach the input size, the ModelSpec.resize of the model
    evaluated ("stretch" for an imported Darknet model); training always letterboxes.
    """

    def __init__(
        self,
        split: Split,
        store: ImageStore,
        size: int,
        hyp: Hyp,
        augment: bool,
        seed: int = 0,
        resize: str = "letterbox",
    ):
        self.split, self.store, self.size, self.hyp = split, store, size, hyp
        self.augment, self.seed, self.resize = augment, seed, resize

    def __len__(self) -> int:
        return len(self.split)

    def _letterboxed(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image letterboxed to (size, size) and its labels as pixel ``cls x1 y1 x2 y2``."""
        image = self.store[index]
        h, w = image.shape[:2]
        boxed, transform = letterbox(image, (self.size, self.size), augment.PAD_VALUE, resize=self.resize)
        labels = _to_pixels(
            self.split.labels[index], w, h, transform.scale_xy, (transform.pad_x, transform.pad_y)
        )
        return boxed, labels

    def _mosaic(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        indices = [index, *rng.integers(0, len(self), 3).tolist()]
        images, labels = [], []
        for i in indices:
            image = self.store[i]
            h, w = image.shape[:2]
            images.append(image)
            labels.append(_to_pixels(self.split.labels[i], w, h))
        return augment.mosaic(images, labels, self.size, rng)

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        """``dataset[(epoch, index)]`` (what the loader asks for) or ``dataset[index]`` (epoch 0)."""
        epoch, index = key if isinstance(key, tuple) else (0, key)
        hyp = self.hyp
        if not self.augment:
            image, labels = self._letterboxed(index)
        else:
            rng = np.random.default_rng((self.seed, epoch, index))
            if rng.random() < hyp.mosaic:
                image, labels = self._mosaic(index, rng)
            else:
                image, labels = self._letterboxed(index)
            image, labels = augment.random_affine(
                image, labels, (self.size, self.size), rng, hyp.degrees, hyp.translate, hyp.scale, hyp.shear
            )
            image = np.ascontiguousarray(image)
            augment.hsv_jitter(image, hyp.hsv_h, hyp.hsv_s, hyp.hsv_v, rng)
            if rng.random() < hyp.fliplr:
                image, labels = augment.flip(image, labels, horizontal=True)
            if rng.random() < hyp.flipud:
                image, labels = augment.flip(image, labels, horizontal=False)
            # Last, so the draws above (and older runs' samples) do not change when it is off.
            image, _ = augment.camera_corruption(
                image, hyp.corrupt, (hyp.corrupt_sev_min, hyp.corrupt_sev_max), rng
            )
        normalised = _to_normalised(labels, self.size)
        chw_rgb = np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1))
        return Sample(torch.from_numpy(chw_rgb), torch.from_numpy(normalised), index)


def collate(samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """-> images (b, 3, s, s) uint8, targets (n, 6) ``image_in_batch cls cx cy w h``, dataset indices."""
    images = torch.stack([s.image for s in samples])
    targets = [
        torch.cat([torch.full((len(s.labels), 1), float(i)), s.labels], dim=1) for i, s in enumerate(samples)
    ]
    return images, torch.cat(targets, 0), [s.index for s in samples]


class EpochShuffleSampler(Sampler[int]):
    """Shuffles with ``seed + epoch`` (or keeps order); the single-process twin of DistributedSampler."""

    def __init__(self, length: int, seed: int, shuffle: bool = True):
        self.length, self.seed, self.shuffle, self.epoch = length, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.length))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length


class EpochKeyedSampler(Sampler[tuple[int, int]]):
    """Wraps an index sampler and yields ``(epoch, index)``: the epoch reaches persistent workers
    with every request. ``set_epoch`` goes to the wrapped sampler too (its shuffle order)."""

    def __init__(self, indices: Sampler[int]):
        self.indices, self.epoch = indices, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.indices.set_epoch(epoch)  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, index) for index in self.indices)

    def __len__(self) -> int:
        return len(self.indices)  # type: ignore[arg-type]


def _worker_init(_: int) -> None:
    # Workers already run in parallel; OpenCV's own thread pool would oversubscribe the cores.
    cv2.setNumThreads(0)


def build_loader(
    dataset: YoloDataset,
    batch: int,
    workers: int,
    shuffle: bool,
    seed: int,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """DataLoader over ``dataset``. ``batch`` is per process. DDP hook: ``world_size > 1`` swaps in
    ``DistributedSampler`` (same ``seed + epoch`` shuffling rule). Call ``loader.sampler.set_epoch``
    before each epoch; workers persist across epochs."""
    if world_size > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler: Sampler[int] = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed
        )
    else:
        sampler = EpochShuffleSampler(len(dataset), seed, shuffle)
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=EpochKeyedSampler(sampler),
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers else None,
        persistent_workers=workers > 0,  # the epoch comes with each key (EpochKeyedSampler)
    )
