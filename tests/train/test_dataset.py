"""data.yaml parsing, label errors, provenance, image cache and the seeded loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from stopsign.train.config import Hyp
from stopsign.train.data.layout import DatasetError
from stopsign.train.dataset import ImageStore, label_path_for, load_data_spec
from stopsign.train.loader import YoloDataset, build_loader


def test_loads_canonical_layout(tiny_data: Path) -> None:
    spec = load_data_spec(tiny_data)
    assert spec.names == ["stop_sign"] and len(spec.train) == 16 and len(spec.val) == 8
    assert spec.val.roles[:2] == ["confuser", "confuser"]
    assert len(spec.val.labels[0]) == 0  # confusers are negatives
    assert set(spec.train.sources) == {"synthA", "synthB"}
    assert all(labels.shape[1] == 5 for labels in spec.train.labels)


def test_dataset_folder_and_image_folder_splits(tiny_data: Path) -> None:
    doc = yaml.safe_load(tiny_data.read_text())
    doc.update(train="images", val="images")
    tiny_data.write_text(yaml.safe_dump(doc))
    spec = load_data_spec(tiny_data.parent, check=False)  # a folder holding data.yaml
    assert len(spec.train) == len(spec.val) == 24


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0 0.5 0.5 0.2", "expected 5 fields"),
        ("3 0.5 0.5 0.2 0.2", "class id 3"),
        ("0 1.5 0.5 0.2 0.2", "out of"),
        ("0 0.5 0.5 0 0.2", "positive"),
    ],
)
def test_bad_label_names_file_and_line(tiny_data: Path, line: str, reason: str) -> None:
    label = tiny_data.parent / "labels" / "img003.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n" + line + "\n")
    with pytest.raises(DatasetError, match=rf"img003.txt:2.*{reason}"):
        load_data_spec(tiny_data, check=False)
    with pytest.raises(DatasetError, match="img003.txt:2"):
        load_data_spec(tiny_data, check=True)  # edge-data check's messages


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"names": ["a"], "val": "val.txt"}, "missing key 'train'"),
        ({"names": ["a", "b"], "nc": 1, "train": "train.txt", "val": "val.txt"}, "nc=1 but 2 names"),
        ({"names": ["a"], "train": "nowhere", "val": "val.txt"}, "neither a folder nor"),
    ],
)
def test_bad_data_yaml(tiny_data: Path, content: dict, message: str) -> None:
    tiny_data.write_text(yaml.safe_dump(content))
    with pytest.raises(DatasetError, match=message):
        load_data_spec(tiny_data, check=False)


def test_missing_listed_image(tiny_data: Path) -> None:
    (tiny_data.parent / "train.txt").write_text("images/img000.jpg\nimages/ghost.jpg\n")
    with pytest.raises(DatasetError, match=r"train.txt:2: listed image 'images/ghost.jpg'"):
        load_data_spec(tiny_data, check=False)


def test_label_path_for() -> None:
    assert label_path_for(Path("/d/images/a/x.jpg")) == Path("/d/labels/a/x.txt")
    with pytest.raises(DatasetError, match="not inside an 'images' folder"):
        label_path_for(Path("/d/pics/x.jpg"))


def test_caches_agree(tiny_data: Path, tmp_path: Path) -> None:
    images = load_data_spec(tiny_data, check=False).train.images[:3]
    plain, ram = ImageStore(images, 32), ImageStore(images, 32, "ram")
    disk = ImageStore(images, 32, "disk", tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3
    for i in range(3):
        assert plain[i].shape == (32, 32, 3)
        assert np.array_equal(plain[i], ram[i]) and np.array_equal(plain[i], disk[i])


def _batches(spec, workers: int, epochs: list[int]) -> list[list]:
    """The batches of each epoch in turn, from one loader (its workers persist across epochs)."""
    dataset = YoloDataset(spec.train, ImageStore(spec.train.images, 64), 64, Hyp(), augment=True, seed=3)
    loader = build_loader(dataset, 4, workers, shuffle=True, seed=3)
    out = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        out.append(list(loader))
    return out


def test_loader_is_seeded_and_independent_of_workers(tiny_data: Path) -> None:
    spec = load_data_spec(tiny_data, check=False)
    (a,) = _batches(spec, 0, [1])
    # Two workers that live through epoch 2 first: epoch 1 must still come out the same.
    b_other_epoch, b = _batches(spec, 2, [2, 1])
    (c,) = _batches(spec, 0, [2])
    for (ia, ta, xa), (ib, tb, xb) in zip(a, b):
        assert xa == xb and torch.equal(ia, ib) and torch.equal(ta, tb)
    assert [x for _, _, x in a] != [x for _, _, x in c]  # another epoch, another order
    for (ic, _, _), (ib, _, _) in zip(c, b_other_epoch):
        assert torch.equal(ic, ib)  # persistent workers followed the epoch change
    images, targets, _ = a[0]
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.uint8
    assert targets.shape[1] == 6 and set(targets[:, 0].tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert ((targets[:, 2:] >= 0) & (targets[:, 2:] <= 1)).all()


def test_val_samples_are_letterboxed_without_augmentation(tiny_data: Path) -> None:
    spec = load_data_spec(tiny_data, check=False)
    dataset = YoloDataset(spec.val, ImageStore(spec.val.images, 64), 64, Hyp(), augment=False)
    sample = dataset[5]
    assert torch.allclose(sample.labels, torch.from_numpy(spec.val.labels[5]), atol=1e-5)


def test_loader_applies_camera_corruptions_from_hyp(tiny_data: Path) -> None:
    """hyp.corrupt = 1 corrupts every training sample (boxes unchanged); 0 leaves samples as before."""
    spec = load_data_spec(tiny_data, check=False)
    store = ImageStore(spec.train.images, 64)
    plain = YoloDataset(spec.train, store, 64, Hyp(), augment=True, seed=3)
    always = YoloDataset(
        spec.train,
        store,
        64,
        Hyp(corrupt=1.0, corrupt_sev_min=4.0, corrupt_sev_max=5.0),
        augment=True,
        seed=3,
    )
    off = YoloDataset(spec.train, store, 64, Hyp(corrupt=0.0), augment=True, seed=3)
    changed = 0
    for i in range(len(spec.train)):
        a, b, c = plain[(1, i)], always[(1, i)], off[(1, i)]
        assert torch.equal(a.image, c.image) and torch.equal(a.labels, b.labels)
        changed += not torch.equal(a.image, b.image)
    assert changed == len(spec.train)
