"""Why a diffusion recipe samples badly: train it with config/budget overrides, then print its per-timestep
error on noised test images and the FID of a few samplers.

    PYTHONPATH=. python benchmarks/diffusion_mlp_diagnosis.py ddpm --dataset mnist5k \\
        --config '{"prediction_type": "epsilon", "mlp_conditioning": "shift"}' --samplers ddim@50 ddpm@100

The numbers in reference_models/ddpm.yaml and diffusion.yaml (mnist5k) come from this script at
OMP_NUM_THREADS=1, seed 0: 500 samples against 1,000 test images in the dataset's domain features (FID
is biased upward at 500 samples, so compare rows of this script with each other, not with leaderboards).
For DDPM-style families it prints, per timestep t, the MSE of the eps and x_0 estimates on noised test
images; an x_0 error far above 1 at t near T is the epsilon-prediction blow-up the mnist5k recipe avoids.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from genbench.data.base import DATASETS, images_to_uint8
from genbench.features.base import build_features
from genbench.metrics.fid import features_to_statistics, statistics_to_fid
from genbench.models.base import build_model
from genbench.recipes import load_recipe
from genbench.reference import default_features, load_split, reference_features
from genbench.seeding import SeededNoise, seed_everything

TIMESTEPS = (0, 10, 50, 100, 200, 500, 999)


def per_timestep_errors(model, x0: torch.Tensor, seed: int = 0) -> list[str]:
    """'t: eps MSE / x_0 MSE' on x_t = sqrt(ab) x0 + sqrt(1 - ab) eps, for a model with a vp_schedule."""
    from genbench.samplers.vp import output_to_eps_x0

    g = torch.Generator().manual_seed(seed)
    out = []
    for t in TIMESTEPS:
        ab = model.vp_schedule.alphas_cumprod[t]
        eps = torch.randn(x0.shape, generator=g)
        x_t = ab.sqrt().float() * x0 + (1 - ab).sqrt().float() * eps
        with torch.no_grad():
            raw = model.model_output(x_t, torch.full((len(x0),), t))
            e_hat, x0_hat = output_to_eps_x0(raw, x_t, torch.full((len(x0),), float(ab), dtype=torch.float64),
                                             model.prediction_type)
        out.append(f"t={t}: eps {float(((e_hat - eps) ** 2).mean()):.3f} / x0 {float(((x0_hat - x0) ** 2).mean()):.3f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--config", default="{}", help="JSON overrides of the recipe's config")
    ap.add_argument("--train", default="{}", help="JSON overrides of the recipe's budget (steps, batch_size, lr, ema)")
    ap.add_argument("--samplers", nargs="+", default=["ddim@50"], help="SAMPLER@STEPS ...")
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()

    ds = DATASETS.get(args.dataset)
    recipe = load_recipe(args.recipe, ds.modality, None, args.dataset)
    config = {**recipe.config, **json.loads(args.config)}
    budget = dataclasses.replace(recipe.budget, **json.loads(args.train))
    model = build_model(recipe.family, ds.shape, ds.modality, ds.num_classes, **config)
    t0 = time.perf_counter()
    report = model.fit(load_split(args.dataset, "train"), budget, seed_everything(0), None)
    print(f"{args.recipe} on {args.dataset}: config {json.dumps(config)}, budget {budget}")
    print(f"trained in {time.perf_counter() - t0:.0f} s, final loss {report['loss']:.4f}")
    model.eval()
    test = load_split(args.dataset, "test")
    if hasattr(model, "vp_schedule"):
        print("per-timestep MSE on noised test images: " + " | ".join(per_timestep_errors(model, test.x[:300].float())))
    extractor = build_features(default_features(ds, None))
    ref = reference_features(args.dataset, "test", 1000, extractor)
    key = next(iter(ref))
    mu2, s2 = features_to_statistics(ref[key])
    for item in args.samplers:
        sampler, _, steps = item.partition("@")
        noise = SeededNoise.for_run(0, args.n, "cpu")
        x = torch.cat([model.sample(b, sampler, int(steps) if steps else None)[0] for b in noise.batches(250)])
        mu1, s1 = features_to_statistics(extractor.extract(images_to_uint8(x, model.sample_quantisation))[key])
        saturated = float((x.abs() > 0.99).float().mean())
        print(f"{item}: FID {statistics_to_fid(mu1, s1, mu2, s2):.1f} ({args.n} samples), pixels at +-1: {saturated:.3f}")


if __name__ == "__main__":
    main()
