"""User data for ``genbench eval INPUT1 INPUT2``: image folders, .npz/.npy arrays, or ``dataset:NAME[:SPLIT]``.

Image folders (``load_image_folder``)
    Files ending in .png .jpg .jpeg .bmp .webp (any case) anywhere below the folder, read in
    sorted order of their relative paths, decoded in parallel by a thread pool. Hidden files
    and folders (a name starting with ".") are skipped silently; other files (.txt, .gif,
    .npz, ...) are skipped with a logged note naming how many and one example. Greyscale
    images (modes 1, L, LA) keep one channel; everything else becomes RGB, with alpha
    dropped (not composited). If the folder mixes greyscale and colour images, the greyscale
    ones are repeated to three channels (lossless). Pixels are used as stored (EXIF
    orientation is not applied). Images of different sizes are refused: metrics must compare
    like with like, and a silent resize would change the numbers; the message names two sizes
    and how to resize. 16-bit and floating-point images are refused (convert to 8 bits).

Arrays (``load_array_file``)
    ``.npy``, or ``.npz`` taking the array under the first present key of ``ARRAY_KEYS``
    (images, x, features, arr_0), else its only array (several arrays and none of those keys
    is refused, listing the keys). Labels are taken from ``labels`` or ``y`` (must be
    integers, one per example) or, beside ``arr_0``, from ``arr_1`` when it fits. Always
    ``allow_pickle=False``. What an array means follows from dtype and rank:

    - uint8, N x H x W (greyscale), N x H x W x C or N x C x H x W with C in {1, 3}: images;
      the layout is NHWC when the last axis is 1 or 3, NCHW when axis 1 is; both is ambiguous.
    - float, rank 3 or 4 (same layouts): images, in [0, 1] when every value lies in [0, 1],
      else in [-1, 1] when every value lies there, else refused (say ``x / 255`` or clip).
    - float, N x D: points or feature vectors (modality "points").

    Anything else (other dtypes or ranks, NaN/Inf, fewer than 2 examples) is refused.

Images always come back as ``Samples`` of float32 N x C x H x W in [-1, 1], computed as
u / 127.5 - 1 from the uint8 pixels u. That map is exactly inverted by
``images_to_uint8`` (checked for all 256 values in the tests), so ``Samples.uint8()`` hands
the feature extractors the files' own pixel values, with no second quantisation.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from genbench.data.base import IMAGES, POINTS, Samples, parse_dataset_ref, uint8_to_images
from genbench.data.smiles import SMILES_SUFFIXES, read_smiles_file
from genbench.errors import UsageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
ARRAY_SUFFIXES = (".npz", ".npy")
ARRAY_KEYS = ("images", "x", "features", "arr_0")
LABEL_KEYS = ("labels", "y")
DATASET_PREFIX = "dataset:"
ACCEPTED_INPUTS = (
    "a folder of images (png/jpg/jpeg/bmp/webp), an .npz or .npy file, a SMILES file (.smi/.txt/.csv), "
    "or dataset:NAME[:SPLIT] (e.g. dataset:mnist5k:test; `genbench ls datasets` lists names)"
)
GREY_MODES = ("1", "L", "LA", "La")
DEEP_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")
MIN_EXAMPLES = 2


# ---------------------------------------------------------------- dispatch


def load_input(ref: str, data_root: Path | None = None, *, workers: int | None = None) -> Samples:
    """``dataset:NAME[:SPLIT]`` (default split test), a folder of images, or an .npz/.npy file."""
    if ref.startswith(DATASET_PREFIX):
        name = ref[len(DATASET_PREFIX):]
        if not name:
            raise UsageError(f"input {ref!r} names no dataset; write dataset:NAME[:SPLIT], e.g. dataset:mnist5k:test")
        dataset, split = parse_dataset_ref(name, default_split="test")
        return dataset.load(split, data_root)
    path = Path(ref).expanduser()
    if path.is_dir():
        return load_image_folder(path, workers)
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return load_array_file(path)
    if path.suffix.lower() in SMILES_SUFFIXES and path.is_file():
        return read_smiles_file(path)
    if not path.exists():
        if _dataset_hint(ref):  # NAME[:SPLIT] without the prefix, as `genbench stats` takes it
            dataset, split = parse_dataset_ref(ref, default_split="test")
            return dataset.load(split, data_root)
        raise UsageError(f"input {ref!r} does not exist; give {ACCEPTED_INPUTS}")
    raise UsageError(f"input {ref!r} is not a folder, an .npz/.npy file or a dataset; give {ACCEPTED_INPUTS}")


def _dataset_hint(ref: str) -> str:
    try:
        parse_dataset_ref(ref)
    except UsageError:
        return ""
    return f" (to use the dataset, write dataset:{ref})"


# ---------------------------------------------------------------- image folders


def load_image_folder(path: Path, workers: int | None = None) -> Samples:
    """Every image below ``path`` as float32 [N, C, H, W] in [-1, 1] (C = 1 or 3), in sorted order."""
    folder = Path(path)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"image folder {folder} {what}; give a folder of png/jpg/jpeg/bmp/webp images")
    files, others = list_image_files(folder)
    if not files:
        seen = f"; it holds {len(others)} other files (e.g. {others[0].name}): convert them to PNG" if others else ""
        raise UsageError(f"no images (png/jpg/jpeg/bmp/webp) in {folder}{seen}; point to a folder that contains images")
    if others:
        log.warning("note: ignored %d non-image file(s) in %s (e.g. %s); genbench reads %s",
                    len(others), folder, others[0].relative_to(folder), "/".join(s[1:] for s in IMAGE_SUFFIXES))
    if len(files) < MIN_EXAMPLES:
        raise UsageError(f"{folder} holds only {len(files)} image; the metrics need at least {MIN_EXAMPLES}, add more images")
    pixels = stack_images(read_images(files, workers), files, folder)
    # [N, H, W, C] uint8 -> [N, C, H, W] float in [-1, 1]
    x = uint8_to_images(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous())
    return Samples(x, None, IMAGES)


def list_image_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) below ``folder``, sorted by relative path; hidden entries skipped."""
    images, others = [], []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith("."):
                p = Path(root) / name
                (images if p.suffix.lower() in IMAGE_SUFFIXES else others).append(p)
    order = lambda p: p.relative_to(folder).parts
    return sorted(images, key=order), sorted(others, key=order)


def default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


def read_images(files: Sequence[Path], workers: int | None = None) -> list[np.ndarray]:
    """Decode ``files`` (uint8 [H, W, C] each), in order; ``workers`` threads (1 = sequential)."""
    n = workers if workers is not None else default_workers()
    if n < 1:
        raise UsageError(f"workers must be at least 1 (got {n}); pass --workers 1 or more")
    if n == 1 or len(files) < 2:
        return [read_image_uint8(f) for f in files]
    pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="genbench-read")
    try:
        return list(pool.map(read_image_uint8, files))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # stop at the first bad file


def read_image_uint8(path: Path) -> np.ndarray:
    """One image file as uint8 [H, W, C], C = 1 (greyscale) or 3 (colour, alpha dropped)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            mode, arr = im.mode, _grey_or_rgb_pixels(im)
    except Image.DecompressionBombError as e:
        raise UsageError(f"image {path} is too large to decode safely ({e}); resize it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise UsageError(f"cannot decode image {path} ({e}); it is corrupt or truncated: re-save it or remove it") from None
    if arr is None:
        raise UsageError(f"image {path} has {mode} pixels (16-bit or floating point); save it as 8-bit greyscale or RGB")
    return arr


def _grey_or_rgb_pixels(im) -> np.ndarray | None:
    """uint8 [H, W, 1] (modes 1, L, LA) or [H, W, 3] (every other mode); None for 16-bit/float modes."""
    if im.mode in DEEP_MODES:
        return None
    if im.mode in GREY_MODES:
        return np.asarray(im if im.mode == "L" else im.convert("L"), dtype=np.uint8)[:, :, None]
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)


def stack_images(arrays: Sequence[np.ndarray], files: Sequence[Path], folder: Path) -> np.ndarray:
    """[N, H, W, C] uint8; refuses mixed sizes; greyscale repeated to RGB if any image is colour."""
    first_of_size: dict[tuple[int, int], Path] = {}
    for a, f in zip(arrays, files):
        first_of_size.setdefault(a.shape[:2], f)
    if len(first_of_size) > 1:
        (s1, f1), (s2, f2) = list(first_of_size.items())[:2]
        raise UsageError(
            f"images in {folder} have {len(first_of_size)} different sizes, e.g. {f1.relative_to(folder)} is "
            f"{s1[1]}x{s1[0]} and {f2.relative_to(folder)} is {s2[1]}x{s2[0]} (width x height); resize them all to "
            f"one size first (e.g. ImageMagick `mogrify -resize {s1[1]}x{s1[0]}! *.png`)"
        )
    channels = max(a.shape[2] for a in arrays)
    return np.stack([np.repeat(a, channels, axis=2) if a.shape[2] != channels else a for a in arrays])


# ---------------------------------------------------------------- arrays


def load_array_file(path: Path) -> Samples:
    """An .npz/.npy file as image Samples (uint8 or float images) or point Samples (float N x D)."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise UsageError(f"array file {path} {what}; give an existing .npz or .npy file")
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise UsageError(f"{path} is not an .npz or .npy file; save the array with numpy.save or numpy.savez")
    array, labels = _read_npy(path) if suffix == ".npy" else _read_npz(path)
    return array_to_samples(array, path, labels)


def _read_npy(path: Path) -> tuple[np.ndarray, None]:
    try:
        return np.load(path, allow_pickle=False), None
    except (ValueError, OSError, EOFError) as e:
        raise _unreadable(path, e) from None


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            key = _choose_array_key(path, list(npz.keys()))
            return npz[key], _read_labels(npz, key)
    except UsageError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise _unreadable(path, e) from None


def _unreadable(path: Path, e: BaseException) -> UsageError:
    if "pickle" in str(e).lower() or "object arrays" in str(e).lower():
        return UsageError(f"{path} holds pickled Python objects, which genbench never loads; save a plain numeric array (numpy.save(path, x.astype(np.float32)))")
    return UsageError(f"cannot read {path} ({e}); it is not a valid numpy file or is truncated: save it again")


def _choose_array_key(path: Path, keys: list[str]) -> str:
    for key in ARRAY_KEYS:
        if key in keys:
            return key
    if len(keys) == 1:
        return keys[0]
    listed = ", ".join(keys) if keys else "none"
    raise UsageError(f"{path} holds arrays {listed}; name the one to evaluate {' or '.join(ARRAY_KEYS)} (numpy.savez(path, images=x))")


def _read_labels(npz, key: str) -> np.ndarray | None:
    names = [k for k in LABEL_KEYS if k in npz.files]
    if names:
        return npz[names[0]]
    if key == "arr_0" and "arr_1" in npz.files:
        y = npz["arr_1"]
        return y if y.ndim == 1 and np.issubdtype(y.dtype, np.integer) else None
    return None


def array_to_samples(array: np.ndarray, source: Path | str, labels: np.ndarray | None = None) -> Samples:
    """Interpret a validated array by dtype and rank (see the module docstring)."""
    check_array(array, source)
    y = check_labels(labels, len(array), source)
    if array.ndim == 2:
        return Samples(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), y, POINTS)
    nhwc = to_nhwc(array, source)
    if array.dtype == np.uint8:
        # [N, H, W, C] uint8 -> [N, C, H, W] float in [-1, 1]
        return Samples(uint8_to_images(torch.from_numpy(nhwc).permute(0, 3, 1, 2).contiguous()), y, IMAGES)
    x = float_images_to_unit_range(nhwc, source)
    return Samples(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), y, IMAGES)


def check_array(a: np.ndarray, source: Path | str) -> None:
    """dtype, rank, size and finiteness checks, each a one-line UsageError naming the fix."""
    floating = np.issubdtype(a.dtype, np.floating)
    if a.dtype != np.uint8 and not floating:
        raise UsageError(
            f"{source} holds a {a.dtype} array; images must be uint8 (0..255) or float in [0, 1] or [-1, 1], "
            "points float: convert with x.astype(np.uint8) or x.astype(np.float32)"
        )
    ranks = (2, 3, 4) if floating else (3, 4)
    if a.ndim not in ranks:
        kinds = "N x D points or N x H x W [x C] images" if floating else "N x H x W [x C] images (uint8 is read as pixels)"
        raise UsageError(f"{source} holds a {a.ndim}-D {a.dtype} array of shape {a.shape}; expected {kinds}")
    if a.shape[0] < MIN_EXAMPLES:
        raise UsageError(f"{source} holds {a.shape[0]} example(s); the metrics need at least {MIN_EXAMPLES}, along the first axis")
    if floating and not np.isfinite(a).all():
        bad = int(a.size - np.isfinite(a).sum())
        raise UsageError(f"{source} contains {bad} NaN or infinite value(s); remove or fix those examples")


def check_labels(labels: np.ndarray | None, n: int, source: Path | str) -> torch.Tensor | None:
    if labels is None:
        return None
    if labels.ndim != 1 or len(labels) != n or not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"labels in {source} must be {n} integers (one per example), got {labels.dtype} {labels.shape}; fix or drop them")
    return torch.from_numpy(labels.astype(np.int64))


def to_nhwc(a: np.ndarray, source: Path | str) -> np.ndarray:
    """Rank-3 greyscale or rank-4 NHWC/NCHW -> [N, H, W, C] with C in {1, 3}."""
    if a.ndim == 3:
        return a[..., None]
    last, second = a.shape[-1] in (1, 3), a.shape[1] in (1, 3)
    if last and not second:
        return a
    if second and not last:
        return np.moveaxis(a, 1, -1)
    why = "both axis 1 and the last axis could be channels" if last else "neither axis 1 nor the last axis has 1 or 3 channels"
    raise UsageError(
        f"cannot tell the image layout of {source}, shape {a.shape}: {why}; save N x H x W x C or N x C x H x W with C 1 or 3 "
        "(drop alpha with x[..., :3])"
    )


def float_images_to_unit_range(x: np.ndarray, source: Path | str) -> np.ndarray:
    """Float images in [0, 1] or [-1, 1] -> float32 in [-1, 1] (an array within [0, 1] is read as [0, 1])."""
    lo, hi = float(x.min()), float(x.max())
    if 0.0 <= lo and hi <= 1.0:
        # [0, 1] -> [-1, 1]
        return (x.astype(np.float64) * 2.0 - 1.0).astype(np.float32)
    if -1.0 <= lo and hi <= 1.0:
        return x.astype(np.float32)
    raise UsageError(
        f"float images in {source} range over [{lo:.4g}, {hi:.4g}], outside both [0, 1] and [-1, 1]; "
        "rescale them (x / 255 for 0..255 values) or clip (np.clip(x, -1, 1)), or save uint8 pixels"
    )
