"""How an image becomes a model input: one module for training and serving, so they cannot drift.

Every image mode a phone or browser produces is normalised the same way: EXIF rotation applied,
the first frame of an animation, alpha composited onto white, CMYK and grayscale to RGB. The
geometry (shorter side resized with Pillow's antialiased bilinear filter, centre crop) and the
normalisation are numpy and Pillow only: the predictor image carries no torch, and the trainer
calls these same functions for its evaluation inputs.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from galley.model.config import IMAGENET_MEAN, IMAGENET_STD

MAX_PIXELS = 40_000_000
"""Images larger than this are refused before decoding (decompression bombs)."""

MAX_ASPECT_RATIO = 50
"""Images longer than this many times their width (or wider than their height) are refused: the
shorter side is resized up to ``resize_size`` before the crop, so a 118-byte 1x10,000 PNG would
become a 256x2,560,000 image (gigabytes). A 50:1 strip resizes to at most 3.3 megapixels."""

Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(ValueError):
    """The bytes are not a usable image; the message says why."""


def center_crop(array: np.ndarray, size: int) -> np.ndarray:
    """The centred ``size`` x ``size`` window of a CHW array (offsets rounded as torchvision rounds them)."""
    height, width = array.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from {width}x{height}")
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return array[..., top:top + size, left:left + size]


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

    def _shorter_side_resized(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        scale = self.resize_size / min(width, height)
        target = (max(self.resize_size, round(width * scale)), max(self.resize_size, round(height * scale)))
        if target != (width, height):
            image = image.resize(target, Image.Resampling.BILINEAR, reducing_gap=None)
        return image

    def resized(self, image: Image.Image) -> np.ndarray:
        """RGB image -> uint8 CHW array, shorter side ``resize_size``, centre-cropped square.

        This is what the trainer keeps in memory for every photo.
        """
        array = np.asarray(self._shorter_side_resized(image), dtype=np.uint8).transpose(2, 0, 1)
        return np.ascontiguousarray(center_crop(array, self.resize_size))

    def normalized(self, resized: np.ndarray) -> np.ndarray:
        """uint8 CHW array from :meth:`resized` -> the float32 ``image_size`` input the network takes.

        ``(x / 255 - mean) / std`` folded into one multiply and one in-place add (``x * scale +
        bias``): two passes over the pixels instead of four temporaries, a few tenths of a
        millisecond per image on the serving path. The trainer's evaluation inputs come from here too.
        """
        crop = center_crop(resized, self.image_size)
        scale, bias = self._scale_and_bias
        result: np.ndarray = np.multiply(crop, scale.reshape(3, 1, 1), dtype=np.float32)
        result += bias.reshape(3, 1, 1)
        return result

    @cached_property
    def _scale_and_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """``1 / (255 std)`` and ``-mean / std`` per channel, worked out once per instance."""
        mean = np.asarray(self.mean, dtype=np.float64)
        std = np.asarray(self.std, dtype=np.float64)
        return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)

    def eval_input(self, image: Image.Image) -> np.ndarray:
        """RGB image -> float32 CHW network input: resize, centre-crop, normalise.

        The same arithmetic as ``normalized(resized(image))``, bit for bit (a test holds them
        equal), in fewer passes for the serving path: Pillow cuts the final window and splits it
        into channels, and each channel is scaled straight into its plane of the result.
        """
        image = self._shorter_side_resized(image)
        width, height = image.size
        inner = round((self.resize_size - self.image_size) / 2.0)
        left = round((width - self.resize_size) / 2.0) + inner
        top = round((height - self.resize_size) / 2.0) + inner
        window = image.crop((left, top, left + self.image_size, top + self.image_size))
        scale, bias = self._scale_and_bias
        result = np.empty((3, self.image_size, self.image_size), dtype=np.float32)
        for index, channel in enumerate(window.split()):
            np.multiply(np.asarray(channel), scale[index], out=result[index])
            result[index] += bias[index]
        return result


def decode_image(data: bytes, draft_size: int | None = None) -> Image.Image:
    """Bytes -> RGB PIL image, or :class:`ImageError` saying what is wrong.

    With ``draft_size``, a large JPEG is decoded at the smallest of its 1/2, 1/4 and 1/8 scales
    whose sides are still at least ``draft_size`` (what resizing to that size needs): a phone's
    12-megapixel photo then costs a fraction of the memory and time. The trainer and the predictor
    pass the same size, so they see the same pixels.
    """
    if not data:
        raise ImageError("the file is empty; expected a JPEG, PNG, WebP, GIF or BMP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"the image is {width}x{height} pixels; at most {MAX_PIXELS:,} pixels are accepted")
            if max(width, height) > MAX_ASPECT_RATIO * max(1, min(width, height)):
                raise ImageError(f"the image is {width}x{height} pixels; its long side may be at most "
                                 f"{MAX_ASPECT_RATIO} times its short side")
            image.seek(0)
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
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
    """Apply EXIF rotation and bring any mode to RGB (alpha onto white). The image is changed in
    place where that saves a copy: an upright RGB photo, the common case, is returned as it is."""
    ImageOps.exif_transpose(image, in_place=True)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")
