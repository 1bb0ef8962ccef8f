"""Evaluation samples follow ModelSpec.resize: stretched for a Darknet model, labels kept exact."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stopsign.train.config import Hyp
from stopsign.train.dataset import ImageStore, load_data_spec
from stopsign.train.loader import YoloDataset
from tests.train.conftest import draw_dataset


def test_stretch_validation_samples(tmp_path: Path) -> None:
    data = draw_dataset(tmp_path / "d", n_train=2, n_val=4, size=64, n_confusers=0)
    spec = load_data_spec(data, check=False)
    for path in spec.val.images:  # wide frames: stretching and letterboxing now differ
        cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path)), (128, 48)))
    store = ImageStore(spec.val.images, 64)
    stretched = YoloDataset(spec.val, store, 64, Hyp(), augment=False, resize="stretch")
    boxed = YoloDataset(spec.val, store, 64, Hyp(), augment=False)
    for index in range(len(stretched)):
        sample, other = stretched[index], boxed[index]
        assert tuple(sample.image.shape) == (3, 64, 64)
        truth = spec.val.labels[index]
        # Stretching maps the frame onto the input: normalised labels are unchanged.
        np.testing.assert_allclose(sample.labels.numpy(), truth, atol=1e-5)
        assert not np.allclose(other.labels.numpy()[:, 2], truth[:, 2], atol=1e-2)  # letterbox shifts y
        assert (other.image[:, :4] == 114).all() and not (sample.image[:, :4] == 114).all()
