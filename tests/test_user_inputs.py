"""User inputs of `genbench eval`: image folders, .npz/.npy arrays, dataset references, and every refusal."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.data.base import images_to_uint8, uint8_to_images
from genbench.data.files import load_array_file, load_image_folder, load_input
from genbench.errors import UnknownNameError, UsageError


def rgb_pixels(n: int, h: int = 12, w: int = 10, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def save_pngs(folder: Path, pixels: np.ndarray, names: list[str] | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, p in enumerate(pixels):
        path = folder / (names[i] if names else f"{i:03d}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p).save(path)
        paths.append(path)
    return paths


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(UsageError) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- the uint8 contract


def test_uint8_round_trip_is_exact_for_every_value():
    u = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(images_to_uint8(uint8_to_images(u)), u)


# ---------------------------------------------------------------- image folders


def test_folder_recursive_sorted_exact_pixels(tmp_path):
    px = rgb_pixels(5)
    names = ["b/002.PNG", "a/001.png", "a/000.Png", "c.png", "b/003.png"]
    save_pngs(tmp_path, px, names)
    s = load_image_folder(tmp_path)
    order = sorted(range(5), key=lambda i: Path(names[i]).parts)  # a/000, a/001, b/002, b/003, c
    assert s.modality == "images" and s.x.shape == (5, 3, 12, 10) and s.x.dtype == torch.float32
    assert torch.equal(s.uint8(), torch.from_numpy(px[order]).permute(0, 3, 1, 2))
    assert s.x.min() >= -1 and s.x.max() <= 1


def test_folder_greyscale_keeps_one_channel(tmp_path):
    px = rgb_pixels(3, c=1)
    save_pngs(tmp_path, px)
    s = load_image_folder(tmp_path)
    assert s.x.shape == (3, 1, 12, 10) and torch.equal(s.uint8(), torch.from_numpy(px).permute(0, 3, 1, 2))


def test_folder_rgba_drops_alpha_and_mixed_grey_is_repeated(tmp_path):
    rgba = rgb_pixels(1, c=4, seed=1)[0]
    grey = rgb_pixels(1, c=1, seed=2)[0]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(grey[..., 0], "L").save(tmp_path / "b.png")
    u = load_image_folder(tmp_path).uint8()  # [2, 3, 12, 10]
    assert torch.equal(u[0], torch.from_numpy(rgba[..., :3]).permute(2, 0, 1))
    assert torch.equal(u[1], torch.from_numpy(np.repeat(grey, 3, axis=2)).permute(2, 0, 1))


def test_folder_other_formats_bmp_webp_jpeg(tmp_path):
    px = rgb_pixels(3, h=16, w=16)
    Image.fromarray(px[0]).save(tmp_path / "0.bmp")
    Image.fromarray(px[1]).save(tmp_path / "1.webp", lossless=True)
    Image.fromarray(px[2]).save(tmp_path / "2.JPEG", quality=90)
    u = load_image_folder(tmp_path).uint8()
    assert torch.equal(u[:2], torch.from_numpy(px[:2]).permute(0, 3, 1, 2))  # lossless formats: exact
    decoded = np.array(Image.open(tmp_path / "2.JPEG").convert("RGB"))  # jpeg: exactly what the decoder gives
    assert torch.equal(u[2], torch.from_numpy(decoded).permute(2, 0, 1))


def test_parallel_read_equals_sequential(tmp_path):
    save_pngs(tmp_path, rgb_pixels(40, seed=5))
    seq, par = load_image_folder(tmp_path, workers=1), load_image_folder(tmp_path, workers=4)
    assert torch.equal(seq.x, par.x)


def test_non_image_files_ignored_with_note_hidden_silently(tmp_path, caplog):
    save_pngs(tmp_path, rgb_pixels(2))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / ".thumbs").mkdir()
    (tmp_path / ".thumbs" / "x.png").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="genbench.data.files"):
        s = load_image_folder(tmp_path)
    assert len(s) == 2
    assert "ignored 1 non-image file(s)" in caplog.text and "notes.txt" in caplog.text and "DS_Store" not in caplog.text


def test_folder_does_not_exist(tmp_path):
    msg = one_line_error(load_image_folder, tmp_path / "nope")
    assert str(tmp_path / "nope") in msg and "does not exist" in msg and "folder of png/jpg" in msg


def test_folder_is_a_file(tmp_path):
    (tmp_path / "f.png").write_bytes(b"x")
    assert "is a file, not a folder" in one_line_error(load_image_folder, tmp_path / "f.png")


def test_empty_folder(tmp_path):
    msg = one_line_error(load_image_folder, tmp_path)
    assert f"no images (png/jpg/jpeg/bmp/webp) in {tmp_path}" in msg and "point to a folder" in msg


def test_folder_with_only_unsupported_files(tmp_path):
    Image.fromarray(rgb_pixels(1)[0]).save(tmp_path / "a.tiff")
    msg = one_line_error(load_image_folder, tmp_path)
    assert "1 other files (e.g. a.tiff)" in msg and "convert them to PNG" in msg


def test_corrupt_image_names_the_file(tmp_path):
    save_pngs(tmp_path, rgb_pixels(3))
    (tmp_path / "001.png").write_bytes(b"this is not a png")
    msg = one_line_error(load_image_folder, tmp_path, workers=2)
    assert str(tmp_path / "001.png") in msg and "corrupt or truncated" in msg and "re-save it or remove it" in msg


def test_truncated_image_names_the_file(tmp_path):
    paths = save_pngs(tmp_path, rgb_pixels(3, h=64, w=64))
    blob = paths[2].read_bytes()
    paths[2].write_bytes(blob[: len(blob) // 2])
    msg = one_line_error(load_image_folder, tmp_path)
    assert str(paths[2]) in msg and "corrupt or truncated" in msg


def test_mixed_sizes_refused_with_two_sizes(tmp_path):
    save_pngs(tmp_path, rgb_pixels(2, h=32, w=32), ["a.png", "b.png"])
    save_pngs(tmp_path, rgb_pixels(1, h=8, w=16), ["c.png"])
    msg = one_line_error(load_image_folder, tmp_path)
    assert "2 different sizes" in msg and "a.png is 32x32" in msg and "c.png is 16x8" in msg and "resize them all" in msg


def test_single_image_refused(tmp_path):
    save_pngs(tmp_path, rgb_pixels(1))
    assert "only 1 image; the metrics need at least 2" in one_line_error(load_image_folder, tmp_path)


def test_sixteen_bit_image_refused(tmp_path):
    save_pngs(tmp_path, rgb_pixels(1))
    Image.fromarray(np.full((12, 10), 4000, np.uint16)).save(tmp_path / "deep.png")
    msg = one_line_error(load_image_folder, tmp_path)
    assert "deep.png" in msg and "16-bit or floating point" in msg and "8-bit" in msg


# ---------------------------------------------------------------- arrays


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_uint8_arrays_both_layouts(tmp_path, layout):
    px = rgb_pixels(4)  # [4, 12, 10, 3]
    arr = px if layout == "nhwc" else px.transpose(0, 3, 1, 2)
    np.save(tmp_path / "a.npy", arr)
    s = load_array_file(tmp_path / "a.npy")
    assert s.modality == "images" and torch.equal(s.uint8(), torch.from_numpy(px).permute(0, 3, 1, 2))


def test_uint8_greyscale_nhw(tmp_path):
    px = rgb_pixels(3, c=1)[..., 0]
    np.savez(tmp_path / "g.npz", px)
    s = load_array_file(tmp_path / "g.npz")
    assert s.x.shape == (3, 1, 12, 10) and torch.equal(s.uint8()[:, 0], torch.from_numpy(px))


def test_float_images_unit_and_symmetric_ranges(tmp_path):
    px = rgb_pixels(3).astype(np.float32)
    np.save(tmp_path / "u.npy", px / 255.0)
    np.save(tmp_path / "s.npy", px / 127.5 - 1.0)
    want = torch.from_numpy(px).permute(0, 3, 1, 2).to(torch.uint8)
    assert torch.equal(load_array_file(tmp_path / "u.npy").uint8(), want)
    assert torch.equal(load_array_file(tmp_path / "s.npy").uint8(), want)


def test_float_images_out_of_range(tmp_path):
    np.save(tmp_path / "a.npy", rgb_pixels(2).astype(np.float32))
    msg = one_line_error(load_array_file, tmp_path / "a.npy")
    assert "range over [0, 255]" in msg and "outside both [0, 1] and [-1, 1]" in msg and "x / 255" in msg


def test_points_and_labels_from_npz(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 7))
    np.savez(tmp_path / "p.npz", features=x, labels=np.arange(50) % 3)
    s = load_array_file(tmp_path / "p.npz")
    assert s.modality == "points" and s.x.dtype == torch.float32 and s.x.shape == (50, 7)
    assert torch.allclose(s.x.double(), torch.from_numpy(x), atol=1e-6) and s.y.tolist()[:4] == [0, 1, 2, 0]


def test_npz_key_preference_and_arr_1_labels(tmp_path):
    px = rgb_pixels(3)
    np.savez(tmp_path / "a.npz", px, np.array([4, 5, 6]))  # arr_0, arr_1 (guided-diffusion style)
    s = load_array_file(tmp_path / "a.npz")
    assert s.x.shape == (3, 3, 12, 10) and s.y.tolist() == [4, 5, 6]
    np.savez(tmp_path / "b.npz", other=np.zeros(3), images=px)
    assert load_array_file(tmp_path / "b.npz").x.shape == (3, 3, 12, 10)


def test_npz_ambiguous_keys(tmp_path):
    np.savez(tmp_path / "a.npz", foo=rgb_pixels(2), bar=rgb_pixels(2))
    msg = one_line_error(load_array_file, tmp_path / "a.npz")
    assert "holds arrays foo, bar" in msg and "images or x or features or arr_0" in msg


def test_bad_labels(tmp_path):
    np.savez(tmp_path / "a.npz", images=rgb_pixels(3), labels=np.array([1.5, 2.0, 3.0]))
    assert "labels in" in one_line_error(load_array_file, tmp_path / "a.npz")


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.full((4, 3), np.nan), "contains 12 NaN or infinite value(s)"),
        (np.array([[1.0, np.inf], [0.0, 0.0]]), "contains 1 NaN or infinite"),
        (np.zeros((4, 8, 8, 3), np.int64), "holds a int64 array; images must be uint8"),
        (np.zeros((4, 3), bool), "holds a bool array"),
        (np.zeros(5), "1-D float64 array"),
        (np.zeros((2, 2, 2, 2, 3)), "5-D float64 array"),
        (np.zeros((4, 5), np.uint8), "2-D uint8 array of shape (4, 5); expected N x H x W [x C] images"),
        (np.zeros((1, 8, 8, 3), np.uint8), "holds 1 example(s); the metrics need at least 2"),
        (np.zeros((4, 3, 8, 3), np.uint8), "both axis 1 and the last axis could be channels"),
        (np.zeros((4, 8, 8, 4), np.uint8), "neither axis 1 nor the last axis has 1 or 3 channels"),
    ],
)
def test_array_refusals(tmp_path, array, fragment):
    np.save(tmp_path / "a.npy", array)
    msg = one_line_error(load_array_file, tmp_path / "a.npy")
    assert str(tmp_path / "a.npy") in msg and fragment in msg, msg


def test_pickled_object_array_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert "pickled Python objects, which genbench never loads" in one_line_error(load_array_file, tmp_path / "o.npy")
    (tmp_path / "p.npy").write_bytes(pickle.dumps(np.zeros((3, 2))))
    assert "pickled Python objects" in one_line_error(load_array_file, tmp_path / "p.npy")


def test_truncated_and_unreadable_files(tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((10, 8, 8, 3), np.uint8))
    blob = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(blob[:-100])
    msg = one_line_error(load_array_file, tmp_path / "t.npy")
    assert "cannot read" in msg and "save it again" in msg
    (tmp_path / "z.npz").write_bytes(b"PK\x03\x04 broken zip")
    assert "cannot read" in one_line_error(load_array_file, tmp_path / "z.npz")
    assert "does not exist" in one_line_error(load_array_file, tmp_path / "missing.npz")


# ---------------------------------------------------------------- load_input dispatch


def test_load_input_dataset_refs():
    s = load_input("dataset:mnist5k")
    assert s.x.shape == (1000, 1, 28, 28)  # default split: test
    assert len(load_input("dataset:digits:train")) == 1437
    assert load_input("dataset:toy2d:moons:test").x.shape == (5000, 2)
    with pytest.raises(UnknownNameError, match="Did you mean 'mnist5k'"):
        load_input("dataset:mnist5")
    assert "has no split 'val'" in one_line_error(load_input, "dataset:digits:val")
    assert "names no dataset" in one_line_error(load_input, "dataset:")


def test_load_input_folder_and_arrays(tmp_path):
    save_pngs(tmp_path / "imgs", rgb_pixels(2))
    np.save(tmp_path / "a.npy", rgb_pixels(2))
    assert load_input(str(tmp_path / "imgs")).x.shape == (2, 3, 12, 10)
    assert torch.equal(load_input(str(tmp_path / "a.npy")).x, load_input(str(tmp_path / "imgs")).x)


def test_load_input_refusals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    msg = one_line_error(load_input, "no/such/thing")
    assert "does not exist" in msg and "dataset:NAME[:SPLIT]" in msg and ".npz or .npy" in msg
    # NAME[:SPLIT] without the prefix is the dataset, as `genbench stats` takes it (no such path here)
    assert torch.equal(load_input("digits:train").x, load_input("dataset:digits:train").x)
    assert len(load_input("digits")) == 360  # the test split by default
    Image.fromarray(rgb_pixels(1)[0]).save(tmp_path / "one.png")
    msg = one_line_error(load_input, str(tmp_path / "one.png"))
    assert "is not a folder, an .npz/.npy file or a dataset" in msg and "a folder of images" in msg
