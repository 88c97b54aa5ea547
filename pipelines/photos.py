"""The real photos available offline: skimage's bundled pictures, its 200 LFW faces and scikit-learn's two
sample images. Used for code statistics, top-k, generator training and as the bar a synthesized image
must clear.

`--images` takes two names for them: `offline` (all 222) and `offline-photos` (the 22 photos without the
200 small grey LFW faces, which would otherwise make nine in ten of the pictures a generator learns from).
They travel as source strings `offline:<name>` (see `offline_sources`), which `offline_image` resolves.

Only files that ship inside the installed packages are read; nothing is downloaded.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
from PIL import Image

__all__ = ["offline_photos", "offline_sources", "offline_image", "OFFLINE_SETS", "to_model_input",
           "preprocessing_input", "as_uint8"]

# --images value -> whether the set includes the 200 LFW faces
OFFLINE_SETS = {"offline": True, "offline-photos": False}
_PREFIX = "offline:"

# skimage/data files that are natural photos (charts, text and synthetic patterns are left out)
_SKIMAGE_PHOTOS = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png",
                   "coins.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png",
                   "microaneurysms.png", "moon.png", "motorcycle_left.png", "motorcycle_right.png", "page.png",
                   "retina.jpg", "rocket.jpg", "clock_motion.png")


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return a[..., :3]


def offline_photos(faces: bool = True) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 RGB [H, W, 3]) for every bundled photo that is present."""
    import skimage.data
    import sklearn.datasets

    root = os.path.dirname(skimage.data.__file__)
    out = []
    for name in _SKIMAGE_PHOTOS:
        path = os.path.join(root, name)
        if os.path.exists(path):
            out.append((f"skimage/{name}", _rgb(np.asarray(Image.open(path)))))
    if faces and os.path.exists(os.path.join(root, "lfw_subset.npy")):
        for i, face in enumerate(np.load(os.path.join(root, "lfw_subset.npy"))):
            out.append((f"skimage/lfw_subset/{i}", _rgb(face)))
    bunch = sklearn.datasets.load_sample_images()
    for path, img in zip(bunch.filenames, bunch.images):
        out.append((f"sklearn/{os.path.basename(path)}", _rgb(img)))
    return out


def offline_sources(uri: str) -> list[str] | None:
    """The sources of the offline set `uri` names (a key of OFFLINE_SETS), else None."""
    if uri not in OFFLINE_SETS:
        return None
    return [_PREFIX + name for name, _ in offline_photos(faces=OFFLINE_SETS[uri])]


@lru_cache(maxsize=1)
def _by_name() -> dict[str, np.ndarray]:
    return dict(offline_photos())


def offline_image(source: str) -> np.ndarray | None:
    """The photo an `offline:<name>` source names (shared, do not modify), else None."""
    if not source.startswith(_PREFIX):
        return None
    return _by_name()[source[len(_PREFIX):]]


def to_model_input(image: np.ndarray, size: tuple[int, int], channels: int = 3, crop: float = 0.875) -> np.ndarray:
    """Resize the short side to size/crop and centre-crop `size` (crop 0.875: the ImageNet evaluation
    transform; 1.0: the whole short side); returns float32 [channels, H, W] in [0, 1], greyscale (Rec. 601
    luma, exact for grey photos) when `channels` is 1.

    Only the crop is resampled (PIL's `box`): the same filter at the same positions as resizing the whole
    image and cropping after, for about half the work (pixels differ by at most 1/255 from rounding)."""
    h, w = image.shape[:2]
    th, tw = size
    scale = max(th, tw) / crop / min(h, w)
    W, H = max(tw, round(w * scale)), max(th, round(h * scale))  # the resized image the crop is cut from
    left, top = (W - tw) // 2, (H - th) // 2
    sx, sy = w / W, h / H
    box = (left * sx, top * sy, (left + tw) * sx, (top + th) * sy)
    img = Image.fromarray(image)
    if channels == 1:
        img = img.convert("L")
    elif channels != 3:
        raise ValueError(f"photos become 1- or 3-channel inputs, not {channels}")
    img = img.resize((tw, th), Image.BILINEAR, box=box)
    a = np.asarray(img, dtype=np.float32) / 255.0
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def as_uint8(x01: np.ndarray) -> np.ndarray:
    """A prepared picture, float [C, H, W] in [0, 1], as a contiguous uint8 [H, W, C] (rounded)."""
    return np.ascontiguousarray((np.clip(x01, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8))


def preprocessing_input(image: np.ndarray, pre) -> np.ndarray:
    """`to_model_input` with a net's Preprocessing (size, channel count and crop)."""
    return to_model_input(image, pre.size, pre.channels, pre.crop)
