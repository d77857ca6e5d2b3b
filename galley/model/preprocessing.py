"""How an image becomes a tensor: one module for training and serving, so they cannot drift.

Every image mode a phone or browser produces is normalised the same way: EXIF rotation applied,
the first frame of an animation, alpha composited onto white, CMYK and grayscale to RGB.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from torchvision.transforms import v2

from galley.model.config import IMAGENET_MEAN, IMAGENET_STD

MAX_PIXELS = 40_000_000
"""Images larger than this are refused before decoding (decompression bombs)."""

Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(ValueError):
    """The bytes are not a usable image; the message says why."""


@dataclass(frozen=True)
class Preprocessing:
    """Input geometry and normalisation, recorded in the package's config.json."""

    image_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def for_size(cls, image_size: int) -> Preprocessing:
        return cls(image_size=image_size, resize_size=round(image_size * 256 / 224))

    def eval_transform(self) -> v2.Compose:
        """PIL image -> normalised float tensor: resize the shorter side, then centre-crop."""
        return v2.Compose([
            v2.PILToTensor(),
            v2.Resize(self.resize_size, antialias=True),
            v2.CenterCrop(self.image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(self.mean, self.std),
        ])

    def cache_transform(self) -> v2.Compose:
        """PIL image -> uint8 tensor at the resize size: what the trainer keeps in memory."""
        return v2.Compose([
            v2.PILToTensor(),
            v2.Resize(self.resize_size, antialias=True),
            v2.CenterCrop(self.resize_size),
        ])

    def train_augment(self) -> v2.Compose:
        """uint8 tensor (cached) -> augmented, normalised float tensor."""
        return v2.Compose([
            v2.RandomResizedCrop(self.image_size, scale=(0.35, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(self.mean, self.std),
        ])

    def eval_from_cache(self) -> v2.Compose:
        """uint8 tensor (cached) -> the same tensor :meth:`eval_transform` gives."""
        return v2.Compose([
            v2.CenterCrop(self.image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(self.mean, self.std),
        ])


def decode_image(data: bytes) -> Image.Image:
    """Bytes -> RGB PIL image, or :class:`ImageError` saying what is wrong."""
    if not data:
        raise ImageError("the file is empty; expected a JPEG, PNG, WebP, GIF or BMP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"the image is {width}x{height} pixels; at most {MAX_PIXELS:,} pixels are accepted")
            image.seek(0)
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"the image is too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        raise ImageError("not an image in a recognised format; expected a JPEG, PNG, WebP, GIF or BMP image") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"not a readable image ({error}); expected a JPEG, PNG, WebP, GIF or BMP image") from None
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply EXIF rotation and bring any mode to RGB (alpha onto white)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
