"""Chunked k-nearest-neighbour machinery for precision/recall and density/coverage.

Distances are computed ``chunk_size`` x ``chunk_size`` blocks at a time (never N x N), on the
features' device. Precision/recall use ``torch.cdist`` in the features' own dtype on the same
block grid torch-fidelity 0.4.0 uses (``split(chunk)`` of each set; the reference set as cdist's
first argument in the cross distances), so every distance, and hence every tie, is bit-for-bit
the one torch-fidelity sees at the default chunk size. Density/coverage compute them as prdc
does through scikit-learn (float64 squared distances rounded to the features' dtype). What is kept between blocks is O(N * k): running k smallest
distances, ball counts, and (for the bootstrap) the few (real, fake) pairs near a ball's edge.

Balls follow Kynkäänniemi et al. 2019: the ball of a sample has the distance to its k-th
nearest neighbour as radius, the (k+1)-th smallest distance counting the sample itself, and a
point lies in a ball when its distance is <= the radius.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genbench.errors import UsageError

# pairs kept for the bootstrap, per sample of both sets, before falling back to fresh passes
MAX_PAIRS_PER_SAMPLE = 64


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


def nearest_distances(x: torch.Tensor, m: int, chunk: int, upcast: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The m smallest distances of each row of x to all rows of x, itself included, ascending.

    x [N, D] -> (distances [N, m], indices [N, m]); blocks of chunk x chunk.
    """
    values, indices = [], []
    for a in x.split(chunk):
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


@dataclass
class CrossBalls:
    """What one pass over the reference x generated distances finds out about the balls."""

    real_balls_per_fake: torch.Tensor | None  # [n_fake] long: real balls containing each generated sample
    real_ball_occupied: torch.Tensor | None  # [n_real] bool: real ball j contains some generated sample
    in_fake_balls: torch.Tensor | None  # [n_real] bool: real sample j lies in some generated ball
    pairs: tuple[torch.Tensor, ...] | None  # (j, i, d) kept for the bootstrap; None if not asked or overflowed


def cross_balls(
    real: torch.Tensor,
    fake: torch.Tensor,
    real_radius: torch.Tensor | None,
    chunk: int,
    fake_radius: torch.Tensor | None = None,
    fake_pair_bound: torch.Tensor | None = None,
    real_pair_bound: torch.Tensor | None = None,
    max_pairs: int | None = None,
    upcast: bool = False,
) -> CrossBalls:
    """Ball memberships between real [n2, D] and fake [n1, D], chunk x chunk blocks at a time.

    With a bound per generated sample (``fake_pair_bound`` [n1]) or per real sample
    (``real_pair_bound`` [n2]), the pairs (j, i, d) with d <= bound are kept, up to
    ``max_pairs`` (beyond that ``pairs`` is None).
    """
    n1, n2 = len(fake), len(real)
    per_fake = torch.zeros(n1, dtype=torch.long, device=fake.device) if real_radius is not None else None
    occupied = torch.zeros(n2, dtype=torch.bool, device=fake.device) if real_radius is not None else None
    in_fake = torch.zeros(n2, dtype=torch.bool, device=fake.device) if fake_radius is not None else None
    want_pairs = fake_pair_bound is not None or real_pair_bound is not None
    pairs: list | None = [] if want_pairs else None
    kept = 0
    for j0 in range(0, n2, chunk):
        for i0 in range(0, n1, chunk):
            d = block_distances(real[j0 : j0 + chunk], fake[i0 : i0 + chunk], upcast)  # [bj, bi]
            if real_radius is not None:
                inside_real = d <= real_radius[j0 : j0 + chunk, None]
                per_fake[i0 : i0 + chunk] += inside_real.sum(dim=0)
                occupied[j0 : j0 + chunk] |= inside_real.any(dim=1)
            if in_fake is not None:
                in_fake[j0 : j0 + chunk] |= (d <= fake_radius[None, i0 : i0 + chunk]).any(dim=1)
            if pairs is not None:
                bound = (
                    fake_pair_bound[None, i0 : i0 + chunk]
                    if fake_pair_bound is not None
                    else real_pair_bound[j0 : j0 + chunk, None]
                )
                block = _pairs_within(d, bound, j0, i0)
                kept += len(block[0])
                pairs = None if max_pairs is not None and kept > max_pairs else pairs + [block]
    if pairs is not None:
        pairs = tuple(torch.cat(p) for p in zip(*pairs)) if pairs else _no_pairs(fake)
    return CrossBalls(per_fake, occupied, in_fake, pairs)


def _pairs_within(d: torch.Tensor, bound: torch.Tensor, j0: int, i0: int) -> tuple[torch.Tensor, ...]:
    """(j, i, d) of a block's entries d [bj, bi] with d <= bound ([1, bi] or [bj, 1])."""
    j, i = (d <= bound).nonzero(as_tuple=True)
    return j + j0, i + i0, d[j, i]


def _no_pairs(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    empty = torch.zeros(0, dtype=torch.long, device=x.device)
    return empty, empty, torch.zeros(0, dtype=x.dtype, device=x.device)


def resampled_radii(
    neighbour_d: torch.Tensor, neighbour_i: torch.Tensor, counts: torch.Tensor, k: int
) -> tuple[torch.Tensor, bool]:
    """Ball radii [N] within a resample, from each sample's nearest neighbours in the full set.

    neighbour_d, neighbour_i [N, L] ascending; counts [N] multiplicities in the resample. The
    (k+1)-th smallest distance in the resample is where the cumulative multiplicity along the
    sorted neighbours reaches k + 1. Returns (radii, resolved): resolved is False when some
    resampled sample needs more than L neighbours.
    """
    # cumulative multiplicity along each sorted neighbour list: [N, L]
    cumulative = counts[neighbour_i].cumsum(dim=1)
    reached = cumulative >= k + 1
    position = reached.to(torch.uint8).argmax(dim=1, keepdim=True)  # first True: [N, 1]
    resolved = bool((reached[:, -1] | (counts == 0)).all())
    return neighbour_d.gather(1, position)[:, 0], resolved
