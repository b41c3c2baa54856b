"""``genbench sample``: every kind of MODEL, the .npz it writes, --init-noise, and one-line errors (exit 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genbench.errors import UsageError
from genbench.models.base import build_model, save_checkpoint
from genbench.sampling_api import InitNoise
from genbench.seeding import SeededNoise

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(args: list[str], capsys) -> tuple[int, str]:
    from genbench.cli import main

    with pytest.raises(SystemExit) as e:
        main(args + ["--device", "cpu"])
    return e.value.code, capsys.readouterr().err.strip()


def test_recipe_with_dataset_is_trained_once_then_loaded_from_the_cache(tmp_path, capsys):
    from genbench import cache

    out = tmp_path / "s.npz"
    code, err = cli(["sample", "tiny", "--dataset", "toy2d:8gaussians", "--n", "5", "--out", str(out)], capsys)
    assert code == 0, err
    f = np.load(out)
    assert f["samples"].shape == (5, 2) and float(f["nfe"]) == 1 and str(f["sampler"]) == "native"
    stored = sorted(cache.subdir("checkpoints").glob("*.json"))
    assert cli(["sample", "tiny", "--dataset", "toy2d:8gaussians", "--n", "5", "--out", str(out)], capsys)[0] == 0
    assert sorted(cache.subdir("checkpoints").glob("*.json")) == stored
    np.testing.assert_array_equal(np.load(out)["samples"], f["samples"])


def test_checkpoint_path_samples_as_the_model_does(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_model("diffusion", (2,), "points", width=16, depth=1, emb_dim=8)
    save_checkpoint(model, tmp_path / "ckpt")
    out = tmp_path / "s.npz"
    code, err = cli(["sample", str(tmp_path / "ckpt.json"), "--sampler", "heun", "--steps", "3", "--n", "4",
                     "--seed", "5", "--batch-size", "3", "--out", str(out)], capsys)
    assert code == 0, err
    expected, nfe = model.eval().sample(SeededNoise.for_run(5, 4), "heun", 3)
    f = np.load(out)
    # batches of 3 and 4 may take other matmul kernels: equal to float32 rounding, not bit for bit
    torch.testing.assert_close(torch.from_numpy(f["samples"]), expected, rtol=1e-5, atol=1e-5)
    assert float(f["nfe"]) == nfe == 5 and int(f["steps"]) == 3


def test_init_noise_replaces_only_the_first_draw_and_splits_by_batch():
    rows = torch.arange(12.0).reshape(6, 2)
    noise = InitNoise(rows, SeededNoise.for_run(0, 6))
    parts = list(noise.batches(4))
    assert torch.equal(torch.cat([p.randn(2) for p in parts]), rows)
    # later draws are the per-sample generators' first draws (unconsumed by the replaced one)
    assert torch.equal(parts[1].randn(3), SeededNoise.for_run(0, 6, start=0).randn(3)[4:])


@pytest.mark.parametrize("args,message", [
    (["tiny"], "--dataset"),
    (["tiny", "--dataset", "toy2d:8gaussians", "--n", "3", "--init-noise", "{z}"], "--n 2"),
    (["tiny", "--dataset", "toy2d:8gaussians", "--init-noise", "{bad}"], "not a readable .npy"),
    (["tiny", "--dataset", "toy2d:8gaussians", "--sampler", "heun"], "sampler"),
    (["tiny", "--dataset", "toy2d:8gaussians", "--out-as-txt"], ".npz"),
])
def test_bad_input_is_one_line_and_keeps_the_old_output(tmp_path, capsys, args, message):
    np.save(tmp_path / "z.npy", np.zeros((2, 2), np.float32))
    (tmp_path / "bad.npy").write_text("not numpy")
    out = tmp_path / ("s.txt" if "--out-as-txt" in args else "s.npz")
    out.write_bytes(b"previous result")
    args = [a.format(z=tmp_path / "z.npy", bad=tmp_path / "bad.npy") for a in args if a != "--out-as-txt"]
    code, err = cli(["sample", *args, "--out", str(out)], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert out.read_bytes() == b"previous result"


def test_hub_id_that_cannot_be_downloaded_is_one_line(monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from genbench.external import load_external

    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(UsageError, match="hub download failed"):
        load_external("diffusers:google/ddpm-cifar10-32")


def test_a_conditional_model_is_sampled_with_balanced_classes_and_with_init_noise():
    """`genbench sample` asks a class-conditional model for classes 0, 1, ... as runs do (it failed
    with no labels before), and the init-noise wrapper carries those labels through its batches."""
    from genbench.sampling_api import draw

    model = build_model("cgan", (1, 8, 8), "images", 10, latent_dim=4, width=4, bn_batches=2).eval()
    a = draw(model, n=12, seed=3, batch_size=5)
    b = draw(model, n=12, seed=3, batch_size=12)
    assert a.samples.shape == (12, 1, 8, 8) and torch.allclose(a.samples, b.samples, atol=1e-6)
    noise = SeededNoise.for_run(3, 12, num_classes=10)
    wrapped = InitNoise(torch.zeros(12, 4), noise)
    labels = torch.cat([sub.labels for sub in wrapped.batches(5)])
    assert labels.tolist() == [i % 10 for i in range(12)]
