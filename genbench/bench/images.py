"""Image folders to FID/KID/IS end to end: genbench against torch-fidelity, torchmetrics, clean-fid
and pytorch-fid, all on the same PNG folders and the same InceptionV3 weights.

Nothing is downloaded: every side gets one random-weights InceptionV3 file in torch-fidelity's
format (``make_random_inception_weights``: its architecture, Kaiming init, BatchNorm calibrated),
each through its own loading hook:

* torch-fidelity: ``calculate_metrics(feature_extractor_weights_path=W)``.
* torchmetrics: ``FrechetInceptionDistance(feature_extractor_weights_path=W)``, and
  ``KernelInceptionDistance``/``InceptionScore(feature=NoTrainInceptionV3(..., W))`` (its own class: these
  two take no weights path), all with ``antialias=False`` (torch-fidelity's TF1 resize; torchmetrics' default
  antialiased resize gives other features: FID 8% apart on the bench folders); torchmetrics reads no
  folders, so its side reads the PNGs with PIL, and each of its three metrics runs the network.
* clean-fid: ``get_folder_features(model=...)`` (the hook behind ``compute_fid(custom_feat_extractor=)``)
  with torch-fidelity's network, in ``legacy_tensorflow`` mode (no resize outside the network, as
  torch-fidelity), then its ``frechet_distance`` (scipy sqrtm) and ``kernel_distance``. clean-fid has no IS.
* pytorch-fid: ``calculate_fid_given_paths`` with its ``load_state_dict_from_url`` patched to return W's
  state dict (the published file is the same bytes for both packages, so the keys fit). Its resize is
  its own (torch bilinear, not TF1's): its FID differs from the others by that.

The cached row gives both sides their reference (folder b) cached: genbench a statistics file, torch-fidelity
its own feature cache. The fast-path row compares ``genbench eval --fast`` with the exact path: its speed-up, and the
deviation of its values (FID, KID, IS) from the exact ones.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch

from genbench.bench.measure import Case, Values

TF_TARGET = 1.5  # the issue: features + FID/KID/IS end to end, at least 1.5x torch-fidelity on the CPU
CACHED_TARGET = 4.0  # the same with the reference statistics cached
FAST_TARGET = 3.0  # the fast path: at least 3x the exact path (a CPU with AMX, or a GPU)
METRICS = ["fid", "kid", "is"]
TF_KEYS = {"fid": "frechet_inception_distance", "kid_mean": "kernel_inception_distance_mean",
           "kid_std": "kernel_inception_distance_std", "is_mean": "inception_score_mean",
           "is_std": "inception_score_std"}


def make_image_folders(workdir: Path, n: int, size: int = 32, seed: int = 2024) -> tuple[Path, Path]:
    """Two folders of n RGB PNGs (``size`` square): smooth colour fields, and the same kind with pixel noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folders = workdir / f"smooth{n}", workdir / f"noisy{n}"
    for k, folder in enumerate(folders):
        if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        low = torch.from_numpy(rng.uniform(0, 255, size=(n, 3, 4, 4)))
        x = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).numpy()
        x = x + k * rng.normal(0, 60, size=x.shape)  # [n, 3, size, size]
        for i, im in enumerate(np.clip(x, 0, 255).round().astype(np.uint8).transpose(0, 2, 3, 1)):
            Image.fromarray(im).save(folder / f"{i:05d}.png")
    return folders


def random_inception_weights(workdir: Path) -> Path:
    from genbench.features.inception import make_random_inception_weights

    path = workdir / "inception-random-seed0.pth"
    return path if path.is_file() else make_random_inception_weights(path, seed=0)


def warm_up_inception(w: Path, device: str) -> None:
    """One forward of 2 images, so that no side pays the process's first oneDNN/cuDNN kernel set-up (each side's
    own imports and weight loading still count: the rows do not warm up)."""
    from genbench.features.inception import load_inception

    net = load_inception(w)[0].to(device).eval()
    with torch.no_grad():
        net(torch.zeros(2, 3, 32, 32, dtype=torch.uint8, device=device))


def read_png_folder(folder: Path) -> torch.Tensor:
    """uint8 [N, 3, H, W] of a folder's PNGs, sorted by name (what a torchmetrics user writes)."""
    from PIL import Image

    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def genbench_eval(a: Path, b: Path, w: Path, n: int, device: str, metrics: list[str], fast: bool = False):
    from genbench.evaluation import evaluate

    def run() -> Values:
        out = evaluate(str(a), str(b), features="inception", weights=w, metrics=metrics, kid_subset_size=n,
                       device=device, fast=fast)
        return {k: out[k] for k in TF_KEYS if k in out}

    return run


def torch_fidelity_case(a: Path, b: Path, w: Path, n: int, device: str, size: str) -> Case:
    import torch_fidelity

    def run() -> Values:
        out = torch_fidelity.calculate_metrics(input1=str(a), input2=str(b), cuda=device.startswith("cuda"), fid=True,
                                               kid=True, isc=True, feature_extractor_weights_path=str(w),
                                               kid_subset_size=n, verbose=False)
        return {k: float(out[v]) for k, v in TF_KEYS.items()}

    return Case("images -> FID/KID/IS", "torch-fidelity", size, genbench_eval(a, b, w, n, device, METRICS), run,
                target=TF_TARGET, note="torch-fidelity's defaults: batch 64, 4 loader workers")


def torchmetrics_case(a: Path, b: Path, w: Path, n: int, device: str, size: str) -> Case:
    image = importlib.import_module("torchmetrics.image")
    from torchmetrics.image.fid import NoTrainInceptionV3

    def run() -> Values:
        def net(layer: str):  # antialias=False: torch-fidelity's TF1 resize, as every other side here
            return NoTrainInceptionV3("inception-v3-compat", [layer], feature_extractor_weights_path=str(w), antialias=False)

        fid = image.FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(w), antialias=False).to(device)
        kid = image.KernelInceptionDistance(feature=net("2048"), subset_size=n).to(device)
        isc = image.InceptionScore(feature=net("logits_unbiased")).to(device)
        for folder, real in ((a, False), (b, True)):
            x = read_png_folder(folder)
            for i in range(0, len(x), 64):
                xb = x[i:i + 64].to(device)
                fid.update(xb, real=real)
                kid.update(xb, real=real)
                if not real:
                    isc.update(xb)
        torch.manual_seed(2020)  # torchmetrics draws its IS splits and KID subsets from torch's global generator
        kid_mean, _ = kid.compute()
        isc.compute()  # computed and timed, not compared: torchmetrics shuffles before its 10 splits
        return {"fid": float(fid.compute()), "kid_mean": float(kid_mean)}

    return Case("images -> FID/KID/IS", "torchmetrics", size, genbench_eval(a, b, w, n, device, METRICS), run,
                note="antialias=False (its default, an antialiased resize, moved FID 8% here); 3 network passes (one per "
                     "metric); IS timed, not compared (its own shuffle before the splits)")


def clean_fid_case(a: Path, b: Path, w: Path, n: int, device: str, size: str) -> Case:
    cleanfid = importlib.import_module("cleanfid.fid")
    from genbench.features.inception import load_inception

    def run() -> Values:
        net = load_inception(w)[0].to(device).eval()
        # clean-fid hands the extractor float [B, 3, H, W] in [0, 255] (ToTensor * 255: integers up to round-off)
        model = lambda x: net(x.round().clamp(0, 255).to(torch.uint8))[0]  # noqa: E731
        feats = [cleanfid.get_folder_features(str(d), model, num_workers=0, batch_size=64, device=torch.device(device),
                                              mode="legacy_tensorflow", verbose=False) for d in (a, b)]
        mu_sigma = [(f.mean(axis=0), np.cov(f, rowvar=False)) for f in feats]
        np.random.seed(2020)
        kid = cleanfid.kernel_distance(feats[0], feats[1], num_subsets=100, max_subset_size=n)
        return {"fid": float(cleanfid.frechet_distance(*mu_sigma[0], *mu_sigma[1])), "kid_mean": kid}

    return Case("images -> FID/KID", "clean-fid", size, genbench_eval(a, b, w, n, device, ["fid", "kid"]), run,
                note="legacy_tensorflow mode with torch-fidelity's network; no IS")


def pytorch_fid_case(a: Path, b: Path, w: Path, n: int, device: str, size: str) -> Case:
    fid_score = importlib.import_module("pytorch_fid.fid_score")
    inception = importlib.import_module("pytorch_fid.inception")

    def run() -> Values:
        state = torch.load(w, map_location="cpu", weights_only=True)
        original, inception.load_state_dict_from_url = inception.load_state_dict_from_url, lambda *a, **k: state
        try:
            fid = fid_score.calculate_fid_given_paths([str(a), str(b)], 50, device, 2048, num_workers=0)
        finally:
            inception.load_state_dict_from_url = original
        return {"fid": float(fid)}

    return Case("images -> FID", "pytorch-fid", size, genbench_eval(a, b, w, n, device, ["fid"]), run,
                note="its own bilinear resize (not TF1's): FID differs by it")


def cached_reference_case(a: Path, b: Path, w: Path, n: int, device: str, size: str) -> Case:
    """Reference statistics cached on both sides: genbench's statistics file of folder b (``save_stats``, what
    ``genbench stats`` writes) against torch-fidelity's own feature cache of input2 (``input2_cache_name``),
    both written before the timing; each side then extracts folder a only."""
    import torch_fidelity

    from genbench.features.base import build_features
    from genbench.reference import save_stats

    stats = b.parent / f"{b.name}-inception.safetensors"
    if not stats.is_file():
        extractor = build_features("inception", weights=w, device=device)
        save_stats(stats, extractor.extract(read_png_folder(b)), extractor.identity(), {"folder": b.name, "n": n})
    kwargs = dict(input1=str(a), input2=str(b), cuda=device.startswith("cuda"), fid=True, kid=True, isc=True,
                  feature_extractor_weights_path=str(w), kid_subset_size=n, verbose=False, cache=True,
                  cache_root=str(b.parent / "torch-fidelity-cache"), input2_cache_name=f"genbench-bench-{b.name}")
    torch_fidelity.calculate_metrics(**kwargs)  # fills torch-fidelity's cache of input2 (untimed)

    def run() -> Values:
        out = torch_fidelity.calculate_metrics(**kwargs)
        return {k: float(out[v]) for k, v in TF_KEYS.items()}

    return Case("images -> FID/KID/IS, reference cached", "torch-fidelity (input2 cached)", size,
                genbench_eval(a, stats, w, n, device, METRICS), run, target=CACHED_TARGET,
                note="genbench: statistics file of b; torch-fidelity: its feature cache of b")


def fast_path_case(a: Path, b: Path, w: Path, n: int, device: str, size: str) -> Case:
    from genbench.features.nets import fast_path_recipe

    recipe = fast_path_recipe(torch.device(device))
    return Case("images -> FID/KID/IS, --fast", "genbench exact path", size,
                genbench_eval(a, b, w, n, device, METRICS, fast=True), genbench_eval(a, b, w, n, device, METRICS),
                target=FAST_TARGET, note=f"fast path: {recipe}; difference = deviation from the exact path")


PEERS = {"torch-fidelity": torch_fidelity_case, "torch-fidelity (input2 cached)": cached_reference_case,
         "torchmetrics": torchmetrics_case, "clean-fid": clean_fid_case, "pytorch-fid": pytorch_fid_case,
         "genbench --fast": fast_path_case}


def image_cases(workdir: Path, n: int, device: str) -> tuple[list[Case], dict[str, str]]:
    """Cases of every installed peer on two folders of n 32x32 PNGs, and {peer: why skipped}."""
    workdir.mkdir(parents=True, exist_ok=True)
    a, b = make_image_folders(workdir, n)
    w = random_inception_weights(workdir)
    warm_up_inception(w, device)
    cases, skipped = [], {}
    for name, build in PEERS.items():
        try:
            cases.append(build(a, b, w, n, device, f"{n} vs {n} PNG 32x32"))
        except ImportError as e:
            skipped[name] = f"not installed ({e.name}); pip install 'genbench[bench]'"
    return cases, skipped
