"""Chunked k-nearest-neighbour machinery for precision/recall and density/coverage.

Distances are computed ``chunk_size`` x ``chunk_size`` blocks at a time (never N x N), on the
features' device. Precision/recall use ``torch.cdist`` in the features' own dtype on the same
block grid torch-fidelity 0.4.0 uses (``split(chunk)`` of each set; the reference set as cdist's
first argument in the cross distances), so every distance, and hence every tie, is bit-for-bit
the one torch-fidelity sees at the default chunk size. Density/coverage compute them as prdc
does through scikit-learn (float64 squared distances rounded to the features' dtype). What is kept between blocks is O(N * k): running k smallest
distances and ball counts.

Balls follow Kynkäänniemi et al. 2019: the ball of a sample has the distance to its k-th
nearest neighbour as radius, the (k+1)-th smallest distance counting the sample itself, and a
point lies in a ball when its distance is <= the radius.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from genbench.errors import UsageError

def block_distances(a: torch.Tensor, b: torch.Tensor, upcast: bool = False) -> torch.Tensor:
    """Euclidean distances of one block: a [A, D], b [B, D] -> [A, B]. Every distance goes through here.

    Default: ``torch.cdist`` in the features' dtype, as torch-fidelity computes them. ``upcast``:
    as scikit-learn (and so prdc) computes them, squared distances in float64, rounded to the
    features' dtype before the square root.
    """
    if not upcast:
        return torch.cdist(a, b)
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    # |a|^2 - 2 a.b + |b|^2, clipped at 0, in scikit-learn's order of operations
    d2 = (a64 @ b64.T).mul_(-2).add_((a64 * a64).sum(dim=1)[:, None]).add_((b64 * b64).sum(dim=1)[None, :])
    # round to the features' dtype, then a correctly rounded square root: torch's float32 sqrt on
    # the CPU may be one ulp off numpy's, while sqrt in float64 rounded to float32 is exact
    d2.clamp_min_(0).copy_(d2.to(a.dtype))
    return d2.sqrt_().to(a.dtype)


def as_distance_dtype(x: torch.Tensor) -> torch.Tensor:
    """Features in a dtype cdist handles, keeping float32/float64 as they are (torch-fidelity's choice)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.to(torch.float32)


def check_neighbourhood(n: int, k: int, what: str) -> None:
    if n <= k:
        raise UsageError(f"{what} needs more than k={k} samples per set (got {n}); generate more samples or lower k.")


def nearest_distances(
    x: torch.Tensor, m: int, chunk: int, upcast: bool = False, rows: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The m smallest distances of each row of x to all rows of x, itself included, ascending.

    x [N, D] -> (distances [N, m], indices [N, m]); blocks of chunk x chunk. ``rows`` [R]: only
    those rows (-> [R, m]).
    """
    values, indices = [], []
    for a in (x if rows is None else x[rows]).split(chunk):
        best_d = best_i = None
        for j0 in range(0, len(x), chunk):
            d = block_distances(a, x[j0 : j0 + chunk], upcast)  # [bi, bj]
            top_d, top_i = d.topk(min(m, d.shape[1]), dim=1, largest=False)
            if best_d is not None:
                # merge the running m smallest with this block's
                top_d, top_i = torch.cat([best_d, top_d], 1), torch.cat([best_i, top_i + j0], 1)
                # blocks narrower than m (chunk < m) keep fewer than m so far: never ask for more
                top_d, order = top_d.topk(min(m, top_d.shape[1]), dim=1, largest=False)
                top_i = top_i.gather(1, order)
            best_d, best_i = top_d, top_i
        values.append(best_d)
        indices.append(best_i)
    return torch.cat(values), torch.cat(indices)


def kth_nearest_distance(x: torch.Tensor, k: int, chunk: int, upcast: bool = False) -> torch.Tensor:
    """Ball radii [N]: distance to the k-th nearest neighbour, the (k+1)-th smallest with self."""
    return nearest_distances(x, k + 1, chunk, upcast)[0][:, k]


# -- one reference search for precision/recall and density/coverage -----------------------------

# candidates kept beyond the k + 1 nearest, so that the re-ranking by the other distance
# computation (float64, as prdc) almost never needs a fresh search
EXTRA_CANDIDATES = 8
_shared: ContextVar[dict | None] = ContextVar("genbench_shared_knn", default=None)


@contextmanager
def shared_searches(m: int):
    """Within the block, ``reference_radius`` of one set searches its neighbours once (m of them
    and EXTRA_CANDIDATES more) and serves every k < m from that search; m = 0 shares nothing."""
    token = _shared.set({"m": m, "found": {}} if m else None)
    try:
        yield
    finally:
        _shared.reset(token)


def reference_radius(x: torch.Tensor, k: int, chunk: int, upcast: bool = False) -> torch.Tensor:
    """``kth_nearest_distance(x, k, chunk, upcast)``, from the shared search when one is open.

    The search uses the default (cdist) distances, so the radii without ``upcast`` are exactly
    those of a search of k + 1; with ``upcast`` the candidates are re-ranked by the float64
    distances, and rows where a sample outside the candidates could be nearer (its cdist distance
    is certified only to within cdist's round-off bound) are searched again.
    """
    state = _shared.get()
    if state is None or k + 1 > state["m"]:
        return kth_nearest_distance(x, k, chunk, upcast)
    key = (id(x), chunk)
    if key not in state["found"]:
        # keep x alive with its search, so that its id is not reused by another tensor
        state["found"][key] = (x, nearest_distances(x, min(len(x), state["m"] + EXTRA_CANDIDATES), chunk))
    _, (d, i) = state["found"][key]
    if not upcast:
        return d[:, k]
    return reranked_radius(x, d, i, k, chunk)


def candidate_distances(x: torch.Tensor, i: torch.Tensor, chunk: int) -> torch.Tensor:
    """Upcast distances (as ``block_distances(upcast=True)``) of each row of x to its candidates x[i]: [N, L]."""
    out = torch.empty(i.shape, dtype=x.dtype, device=x.device)
    rows = max(1, chunk * chunk // max(1, i.shape[1] * x.shape[1]))  # [rows, L, D] within chunk^2 * D entries
    for r0 in range(0, len(x), rows):
        a64 = x[r0 : r0 + rows].to(torch.float64)  # [r, D]
        b64 = x[i[r0 : r0 + rows]].to(torch.float64)  # [r, L, D]
        d2 = (b64 @ a64[:, :, None])[..., 0].mul_(-2).add_((a64 * a64).sum(dim=1)[:, None]).add_((b64 * b64).sum(dim=2))
        d2.clamp_min_(0).copy_(d2.to(x.dtype))
        out[r0 : r0 + rows] = d2.sqrt_().to(x.dtype)
    return out


def cdist_error_bound(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """A bound [N] on |cdist^2 - true distance^2| from each row of x to any row: the dot-product
    bound gamma_D (|a| + |b|)^2 (Higham 2002, ch. 3), doubled, plus the final rounding."""
    u = torch.finfo(x.dtype).eps / 2
    norms = x.to(torch.float64).norm(dim=1)  # [N]
    gamma = 2 * (x.shape[1] + 8) * u
    return gamma * (norms + norms.max()) ** 2 + 4 * u * d.to(torch.float64) ** 2


def reranked_radius(x: torch.Tensor, d: torch.Tensor, i: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Radii [N] by the upcast distances, from the cdist search's candidates (d, i [N, L])."""
    up = candidate_distances(x, i, chunk).sort(dim=1).values  # [N, L]
    radius = up[:, k].clone()
    if i.shape[1] == len(x):
        return radius  # every sample is a candidate
    # any sample outside the candidates is at cdist distance >= d[:, -1]: its true squared
    # distance is at least d[:, -1]^2 - bound, and its upcast one not below that (less float32 rounding)
    floor = (d[:, -1].to(torch.float64) ** 2 - cdist_error_bound(x, d[:, -1])) * (1 - 4 * torch.finfo(x.dtype).eps)
    unsure = (radius.to(torch.float64) ** 2 > floor).nonzero()[:, 0]
    if len(unsure):
        radius[unsure] = nearest_distances(x, k + 1, chunk, upcast=True, rows=unsure)[0][:, k]
    return radius


@dataclass
class CrossBalls:
    """What one pass over the reference x generated distances finds out about the balls."""

    real_balls_per_fake: torch.Tensor | None  # [n_fake] long: real balls containing each generated sample
    real_ball_occupied: torch.Tensor | None  # [n_real] bool: real ball j contains some generated sample
    in_fake_balls: torch.Tensor | None  # [n_real] bool: real sample j lies in some generated ball


def cross_balls(
    real: torch.Tensor,
    fake: torch.Tensor,
    real_radius: torch.Tensor | None,
    chunk: int,
    fake_radius: torch.Tensor | None = None,
    upcast: bool = False,
) -> CrossBalls:
    """Ball memberships between real [n2, D] and fake [n1, D], chunk x chunk blocks at a time."""
    n1, n2 = len(fake), len(real)
    per_fake = torch.zeros(n1, dtype=torch.long, device=fake.device) if real_radius is not None else None
    occupied = torch.zeros(n2, dtype=torch.bool, device=fake.device) if real_radius is not None else None
    in_fake = torch.zeros(n2, dtype=torch.bool, device=fake.device) if fake_radius is not None else None
    for j0 in range(0, n2, chunk):
        for i0 in range(0, n1, chunk):
            d = block_distances(real[j0 : j0 + chunk], fake[i0 : i0 + chunk], upcast)  # [bj, bi]
            if real_radius is not None:
                inside_real = d <= real_radius[j0 : j0 + chunk, None]
                per_fake[i0 : i0 + chunk] += inside_real.sum(dim=0)
                occupied[j0 : j0 + chunk] |= inside_real.any(dim=1)
            if in_fake is not None:
                in_fake[j0 : j0 + chunk] |= (d <= fake_radius[None, i0 : i0 + chunk]).any(dim=1)
    return CrossBalls(per_fake, occupied, in_fake)
