"""The trainer's tensors, built on the shared preprocessing so that evaluation sees exactly what
the predictor will see.

Photos are decoded and resized once (:meth:`Preprocessing.resized`) and kept as uint8 tensors;
evaluation inputs come from :meth:`Preprocessing.normalized` (the predictor's own function), and
only the training augmentation is torch's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import v2

from galley.model.preprocessing import Preprocessing

TensorTransform = Callable[[torch.Tensor], torch.Tensor]


def cache_transform(preprocessing: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """RGB image -> the uint8 CHW tensor kept in memory."""
    return lambda image: torch.from_numpy(preprocessing.resized(image))


def eval_from_cache(preprocessing: Preprocessing) -> TensorTransform:
    """Cached uint8 tensor -> the float input the predictor computes for the same photo."""
    return lambda cached: torch.from_numpy(preprocessing.normalized(cached.numpy()))


def train_augment(preprocessing: Preprocessing) -> TensorTransform:
    """Cached uint8 tensor -> a randomly cropped and flipped, normalised float tensor."""
    augment: TensorTransform = v2.Compose([
        v2.RandomResizedCrop(preprocessing.image_size, scale=(0.35, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(preprocessing.mean, preprocessing.std),
    ])
    return augment
