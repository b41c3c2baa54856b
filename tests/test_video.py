"""The video modality: moving-digits, the space-time UNet, the data/noise baselines, the domain video features and
their metrics (FVD, per-frame FID, temporal consistency), I3D's loading code, and one suite run end to end."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import scipy.linalg
import torch

from genbench.data.base import get_dataset, images_to_uint8
from genbench.data.moving_digits import MotionConfig, bounce, draw_motion, make_videos, scaled_digits
from genbench.errors import UsageError
from genbench.features.base import build_features
from genbench.metrics import evaluate_features
from genbench.models.base import TrainBudget, build_model
from genbench.seeding import SeededNoise

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_set(seed: int, n_digits: int = 1, n: int = 40):
    digits, labels = scaled_digits("test", 8)
    return make_videos(digits[:n], labels[:n], MotionConfig(seed=seed, n_digits=n_digits), "test")


# ----------------------------------------------------------------------------------------------
# Dataset


def test_same_seed_gives_the_same_videos_and_another_seed_others():
    a, la = small_set(0)
    b, lb = small_set(0)
    c, lc = small_set(1)
    assert a.shape == (40, 8, 1, 16, 16) and a.dtype == np.uint8
    assert np.array_equal(a, b) and all(np.array_equal(la[k], lb[k]) for k in la)
    assert not np.array_equal(a, c) and not np.array_equal(la["position"], lc["position"])
    assert np.array_equal(la["digit"], lc["digit"])  # the same digits, moved otherwise


@pytest.mark.parametrize("n_digits", [1, 2])
def test_digits_never_leave_the_frame(n_digits):
    videos, labels = small_set(3, n_digits, n=200)
    pos = labels["position"]  # [N, K, T, 2]
    assert pos.min() == 0 and pos.max() == 16 - 8  # they reach both edges and stay inside
    if n_digits == 1:
        # nothing is clipped: every frame holds the digit's full ink
        digits, _ = scaled_digits("test", 8)
        ink = videos.reshape(200, 8, -1).astype(np.int64).sum(-1)  # [N, T]
        assert np.array_equal(ink, np.repeat(digits[:200].reshape(200, -1).astype(np.int64).sum(-1)[:, None], 8, 1))


def test_bounce_reflects_off_both_edges():
    path = bounce(np.array([0.5, 7.5]), np.array([-2.0, 2.0]), 4, 8)
    assert np.allclose(path, [[0.5, 7.5], [1.5, 6.5], [3.5, 4.5], [5.5, 2.5]])


def test_direction_label_is_the_quadrant_of_the_first_move():
    rng = np.random.default_rng(0)
    for _ in range(200):
        q, path = draw_motion(rng, MotionConfig(speed=(0.1, 0.2)))  # slow: no bounce in the first step unless at an edge
        step = path[1] - path[0]
        if 0.3 < path[0].min() and path[0].max() < 7.7:
            assert (step[0] < 0) == bool(q & 2) and (step[1] < 0) == bool(q & 1)


def test_registered_dataset_splits_and_frames():
    ds = get_dataset("moving-digits")
    test = ds.load("test")
    assert test.x.shape == (1000, 8, 1, 16, 16) and test.modality == "video"
    assert torch.equal(test.y, ds.video_labels("test")["digit"][:, 0])
    assert torch.equal(torch.bincount(test.y), torch.full((10,), 100))
    frames = get_dataset("moving-digits-frames").load("test")
    assert torch.equal(frames.x[3], test.x[3, 3]) and torch.equal(frames.x[9], test.x[9, 1])
    with pytest.raises(UsageError, match="no split"):
        ds.load("valid")


# ----------------------------------------------------------------------------------------------
# Models


def test_frames_are_independent_without_temporal_blocks_and_mixed_with_them():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 1, 16, 16)
    x2 = x.clone()
    x2[:, 0] += 1.0  # change frame 0 only
    for temporal, mixes in (("none", False), ("attention", True), ("conv", True)):
        model = build_model("video_diffusion", (8, 1, 16, 16), "video", None, temporal=temporal, width=8, patch=2)
        for p in model.ema_net.parameters():  # leave the zero initialisation, so temporal blocks act
            torch.nn.init.normal_(p, std=0.1)
        with torch.no_grad():
            d1, d2 = model.denoise(x, torch.ones(2)), model.denoise(x2, torch.ones(2))
        assert not torch.allclose(d1[:, 0], d2[:, 0])
        assert torch.allclose(d1[:, 1:], d2[:, 1:], atol=1e-6) != mixes, temporal


def test_video_family_refuses_images_and_bad_temporal():
    with pytest.raises(UsageError, match="does not handle images"):
        build_model("video_diffusion", (1, 8, 8), "images")
    with pytest.raises(UsageError, match="temporal block"):
        build_model("video_diffusion", (8, 1, 16, 16), "video", None, temporal="lstm")


def test_data_baseline_returns_training_examples_and_noise_spans_the_range():
    train = get_dataset("moving-digits").load("train").take(50)
    data = build_model("data", (8, 1, 16, 16), "video", 10, capacity=30)
    data.fit(train, TrainBudget(steps=1), torch.Generator().manual_seed(0))
    x, nfe = data.sample(SeededNoise.for_run(0, 20))
    flat = train.x.reshape(50, -1)
    assert all(any(torch.equal(row, t) for t in flat) for row in x.reshape(20, -1)) and nfe == 1.0
    noise = build_model("noise", (8, 1, 16, 16), "video", 10)
    noise.fit(train, TrainBudget(steps=1), torch.Generator().manual_seed(0))
    u, _ = noise.sample(SeededNoise.for_run(0, 20))
    low, high = float(train.x.min()), float(train.x.max())  # the data's range
    assert u.min() >= low and u.max() <= high and abs(float(u.mean()) - (low + high) / 2) < 0.02
    assert float(u.std()) == pytest.approx((high - low) / 12**0.5, rel=0.02)  # uniform's std


# ----------------------------------------------------------------------------------------------
# Features and metrics


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The definition: ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), scipy's sqrtm."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


def test_fvd_per_frame_fid_and_tc_follow_their_definitions():
    g = torch.Generator().manual_seed(0)
    fake = {"pool": torch.randn(300, 16, generator=g) * 1.3 + 0.2, "frame_pool": torch.randn(600, 8, generator=g),
            "frame_similarity": torch.rand(300, 7, generator=g)}
    real = {"pool": torch.randn(400, 16, generator=g), "frame_pool": torch.randn(800, 8, generator=g) + 0.5}
    result = evaluate_features(["fid", "fid_frame", "tc"], fake, real, space="video")
    assert set(result.values) == {"fvd", "fid_frame_video", "tc_video"}
    assert result.values["fvd"] == pytest.approx(frechet_distance(fake["pool"].double().numpy(), real["pool"].double().numpy()), rel=1e-9)
    assert result.values["fid_frame_video"] == pytest.approx(
        frechet_distance(fake["frame_pool"].double().numpy(), real["frame_pool"].double().numpy()), rel=1e-9)
    assert result.values["tc_video"] == pytest.approx(float(fake["frame_similarity"].double().mean()), rel=1e-12)


@pytest.mark.parametrize("name", ["moving-digits", "moving-digits-frames"])
def test_shipped_classifier_matches_its_manifest(name):
    from genbench.features.domain import read_manifest, shipped_dir

    entry = read_manifest(shipped_dir())["classifiers"][name]
    blob = (shipped_dir() / entry["file"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == entry["sha256"] and len(blob) == entry["bytes"]
    assert entry["test_accuracy"] > 0.9


@pytest.fixture(scope="module")
def video_features():
    return build_features("domain:moving-digits")


def test_domain_video_features_identity_and_shapes(video_features):
    x = images_to_uint8(get_dataset("moving-digits").load("test").x[:5])
    out = video_features.extract(x)
    assert out["pool"].shape == (5, 64) and out["logits"].shape == (5, 10)
    assert out["frame_pool"].shape == (40, 128) and out["frame_similarity"].shape == (5, 7)
    ident = video_features.identity()
    assert ident["standard_weights"] is True and ident["frame_features"]["features"] == "domain:moving-digits-frames"
    frames_sha = ident["frame_features"]["weights_sha256"]
    assert ident["weights_sha256"] == hashlib.sha256(f"{ident['video_weights_sha256']}+{frames_sha}".encode()).hexdigest()
    with pytest.raises(UsageError, match="takes videos"):
        video_features.extract(torch.zeros(2, 4, 1, 16, 16, dtype=torch.uint8))


def test_fvd_separates_real_videos_from_independent_frames_and_noise(video_features):
    # the validation of the feature space, independent of any trained generator: real videos against other real
    # videos, the same frames shuffled across videos (what a perfect per-frame model draws), and noise
    # (measured at 500 train videos against 500 test: fvd 4.7, 81.7, 2285; tc 0.958, 0.362, 0.980)
    videos = images_to_uint8(get_dataset("moving-digits").load("test").x)
    test, train = videos[:400], videos[400:800]  # two disjoint sets of real videos
    g = torch.Generator().manual_seed(0)
    shuffled = train.transpose(0, 1).clone()  # [T, N, ...]
    for t in range(shuffled.shape[0]):
        shuffled[t] = shuffled[t][torch.randperm(len(train), generator=g)]
    shuffled = shuffled.transpose(0, 1)
    noise = torch.randint(0, 256, train.shape, generator=g, dtype=torch.uint8)
    real = video_features.extract(test)
    scores = {}
    for name, videos in (("real", train), ("frames", shuffled), ("noise", noise)):
        r = evaluate_features(["fid", "fid_frame", "tc"], video_features.extract(videos), real, space="video")
        scores[name] = r.values
    assert scores["real"]["fvd"] * 8 < scores["frames"]["fvd"] < scores["noise"]["fvd"] / 10, scores
    # each shuffled frame is a real frame: per-frame FID cannot tell them from real videos
    assert scores["frames"]["fid_frame_video"] < 2 * scores["real"]["fid_frame_video"] + 1, scores
    assert scores["real"]["tc_video"] > scores["frames"]["tc_video"] + 0.1, scores


# ----------------------------------------------------------------------------------------------
# I3D (the user's weights; here a random-weights file of the same architecture)


@pytest.fixture(scope="module")
def i3d_files(tmp_path_factory):
    from safetensors.torch import save_file

    from genbench.features.i3d import InceptionI3d

    torch.manual_seed(0)
    net = InceptionI3d().eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):  # random running statistics, as a trained file has
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = net.state_dict_as_pytorch_i3d()
    d = tmp_path_factory.mktemp("i3d")
    torch.save(state, d / "rgb_imagenet.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(d / "i3d.safetensors"))
    return net, d


def test_i3d_loads_pytorch_i3d_state_dicts(i3d_files):
    from genbench.features.i3d import load_i3d, to_i3d_input

    net, d = i3d_files
    state = net.state_dict_as_pytorch_i3d()
    assert "Conv3d_1a_7x7.conv3d.weight" in state and "Mixed_5c.b3b.bn.running_var" in state
    # 57 conv + BatchNorm units (3 stem, 9 Inception modules of 6) of 6 tensors, and the logits' weight and bias
    assert state["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1) and len(state) == 57 * 6 + 2
    x = images_to_uint8(get_dataset("moving-digits").load("test").x[:1])
    with torch.no_grad():
        expect = net(to_i3d_input(x, 32))
    old_style = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # files from before torch 0.4.1
    torch.save(old_style, d / "old.pt")
    for name in ("rgb_imagenet.pt", "i3d.safetensors", "old.pt"):
        features = load_i3d(d / name, size=32)
        assert features.space == "i3d" and features.weights_sha256 == hashlib.sha256((d / name).read_bytes()).hexdigest()
        assert torch.equal(features.extract(x)["pool"], expect)


def test_i3d_refuses_missing_or_foreign_weights(tmp_path, monkeypatch):
    from genbench.features.i3d import WEIGHTS_ENV, load_i3d

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(UsageError, match="downloads none"):
        load_i3d()
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(UsageError, match="does not fit I3D"):
        load_i3d(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="not a readable"):
        load_i3d(tmp_path / "junk.pt")


# ----------------------------------------------------------------------------------------------
# The runner, end to end (no training: the two baselines)


def test_a_video_suite_runs_through_the_runner(tmp_path, monkeypatch):
    import genbench

    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))
    suite = tmp_path / "videos.yaml"
    suite.write_text("name: videos\nprimary_metric: fvd\nsettings: {n_samples: 150, n_reference: 300, features: auto}\n"
                     "runs:\n  - datasets: [moving-digits]\n    models: [real-data, noise]\n")
    summary = genbench.run_suite(str(suite), out=str(tmp_path / "run"))
    df = genbench.load_results(str(tmp_path / "run"))
    assert set(df["status"]) == {"ok"} and len(df) == 2
    # n_real counts videos, not frames, also for the second row, whose reference features come from the cache
    assert set(df["n_real"]) == {300} and set(df["n_fake"]) == {150}
    fvd = dict(zip(df["model"], df["fvd"]))
    assert fvd["real-data"] * 10 < fvd["noise"]
    text = summary.leaderboard.read_text()
    assert "features domain:moving-digits" in text and "fvd ↓" in text and "fid_frame_video ↓" in text


def test_quality_figure_plots_the_frechet_distance_of_the_space():
    from types import SimpleNamespace

    from genbench.report.figures import quality_metric

    rows = [SimpleNamespace(metrics={"fvd": 3.0, "kid_mean_video": 1.0, "nfe": 6.0})]
    assert quality_metric(rows, points=False) == "fvd"
    assert quality_metric([SimpleNamespace(metrics={"fd_dinov2": 1.0, "fd_inf": 2.0})], points=False) == "fd_dinov2"
    assert quality_metric([SimpleNamespace(metrics={"fid": 1.0, "fvd": 2.0})], points=False) == "fid"
