"""scikit-learn's handwritten digits (ships with scikit-learn: no download), as 1x32x32 images."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import ArrayDataset

SIZE = 32
TEST_FRACTION = 0.25
SPLIT_SEED = 0


def load_digits_split(split: str) -> ArrayDataset:
    """The fixed stratified 75/25 split (seed 0) of the 1,797 digits, upsampled to 32x32 in [0, 1].

    The 8x8 images (values 0..16) are divided by 16 and resized bilinearly to 32x32, a size
    divisible by 2**5 so multilevel Haar transforms apply without padding.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    targets = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = train_test_split(np.arange(len(targets)), test_size=TEST_FRACTION,
                                           stratify=bunch.target, random_state=SPLIT_SEED)
    idx = torch.from_numpy(np.sort(train_idx if split == "train" else test_idx))
    x = F.interpolate(images[idx], size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    return ArrayDataset("digits", split, x, targets[idx], [str(d) for d in range(10)],
                        metadata={"source": "sklearn.datasets.load_digits", "value_range": [0.0, 1.0],
                                  "original_size": [8, 8], "test_fraction": TEST_FRACTION,
                                  "split_seed": SPLIT_SEED})
