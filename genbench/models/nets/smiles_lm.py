"""What the SMILES families (``charrnn``, ``smiles_vae``) share: characters as tokens, training, sampling.

Tokens: PAD = 0, BOS = 1, EOS = 2, then one token per character of the recipe's ``alphabet`` (as
MOSES's CharVocab: ``Cl`` is ``C`` then ``l``). A molecule of T characters is BOS c_1 .. c_T EOS; the
model's distribution over the next token is a softmax over the characters and EOS (PAD and BOS are
never drawn: their logits are -inf in training, likelihood and sampling alike); after ``max_length``
characters EOS is certain (the sampler stops there), so

    log p(s) = sum_{t=1..T} log p(c_t | c_<t, ...) + [T < max_length] log p(EOS | c_<=T, ...),

an exact probability in nats of the string the sampler returns: it sums to 1 over every string of at
most ``max_length`` characters of the alphabet (the empty one included). A string with a character
outside the alphabet, or longer than ``max_length``, cannot be sampled and has probability 0
(log p = -inf); training skips such strings and reports how many (``n_dropped``).

Sampling draws character t of sample i by the inverse CDF of softmax(logits / temperature) at u_{i,t},
one uniform per position from sample i's own generator (``SeededNoise``), so a sample does not depend
on its batch; it stops at EOS or after ``max_length`` characters (an unfinished string is kept as it
is; validity then counts it). NFE is the number of network steps a sample used: its characters plus EOS.
``temperature`` is a sampling option (``sampling_options``): 1 draws from the model's distribution,
below 1 sharpens it, above 1 flattens it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from genbench.data.smiles import SMILES, Molecules
from genbench.errors import UsageError
from genbench.models.base import NATIVE, TEMPERATURE, GenerativeModel, Progress, TrainBudget, check_positive_option
from genbench.models.nets.training import init_parameters, train_with_adam
from genbench.registry import check_choice
from genbench.seeding import SeededNoise

PAD, BOS, EOS = 0, 1, 2
N_SPECIAL = 3
# every character of the MOSES train split (#()-123456=BCFHNOS[]clnors) and the rest of common SMILES
DEFAULT_ALPHABET = "#%()+-./0123456789=@BCFHINOPS[\\]abcilnoprs"
TEMPERATURE_MEANING = "softmax temperature T > 0 of every character drawn (1: the model's own distribution)"

# step(previous tokens [B], state) -> (logits [B, V], state)
Step = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]


class CharVocab:
    """Characters <-> token ids (PAD, BOS, EOS, then the alphabet in order)."""

    def __init__(self, alphabet: str):
        self.alphabet = alphabet
        self.index = {c: i + N_SPECIAL for i, c in enumerate(alphabet)}
        self.chars = set(alphabet)

    def __len__(self) -> int:
        return N_SPECIAL + len(self.alphabet)

    def fits(self, s: str, max_length: int) -> bool:
        return len(s) <= max_length and set(s) <= self.chars

    def encode(self, smiles: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
        """[B, T + 2] int64: BOS, the characters, EOS, then PAD up to the batch's longest string (T characters)."""
        width = max(len(s) for s in smiles) + 2
        ids = torch.full((len(smiles), width), PAD, dtype=torch.int64)
        for i, s in enumerate(smiles):
            ids[i, : len(s) + 2] = torch.tensor([BOS, *(self.index[c] for c in s), EOS])
        return ids.to(device)

    def decode(self, ids: Sequence[int]) -> str:
        """The characters of token ids up to the first EOS (special tokens dropped)."""
        out = []
        for t in ids:
            if t == EOS:
                break
            if t >= N_SPECIAL:
                out.append(self.alphabet[t - N_SPECIAL])
        return "".join(out)


def next_token_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log-softmax over the characters and EOS: PAD and BOS get -inf. logits [..., V]."""
    masked = logits.clone()
    masked[..., PAD] = -math.inf
    masked[..., BOS] = -math.inf
    return F.log_softmax(masked, dim=-1)


def sequence_log_probs(logits: torch.Tensor, ids: torch.Tensor, max_length: int) -> torch.Tensor:
    """Per-token log p of the targets ids[:, 1:] given logits [B, T + 1, V] at positions 0..T; PAD -> 0, and the
    EOS after ``max_length`` characters -> 0 (it is certain). [B, T + 1]"""
    targets = ids[:, 1:]
    lp = next_token_log_probs(logits).gather(2, targets.unsqueeze(2)).squeeze(2)
    certain = targets == PAD
    if targets.shape[1] > max_length:
        certain[:, max_length] |= targets[:, max_length] == EOS
    return lp.masked_fill(certain, 0.0)


def draw_tokens(logits: torch.Tensor, u: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse-CDF draw from softmax(logits / T) at u [B] in [0, 1): (tokens [B], their log p at T = 1 [B])."""
    lp = next_token_log_probs(logits.float())
    cdf = torch.softmax(lp / temperature, dim=-1).cumsum(-1)  # [B, V]
    tokens = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1).contiguous()).squeeze(1)
    tokens = tokens.clamp(max=logits.shape[-1] - 1)
    # float rounding of the last CDF entries can point past the drawable tokens: step back to a drawable one
    tokens = torch.where(torch.isinf(lp.gather(1, tokens[:, None]).squeeze(1)), lp.argmax(-1), tokens)
    return tokens, lp.gather(1, tokens[:, None]).squeeze(1)


def sample_sequences(step: Step, state: Any, u: torch.Tensor, temperature: float, vocab: CharVocab,
                     max_length: int) -> tuple[tuple[str, ...], torch.Tensor, torch.Tensor]:
    """Draw one string per row of u [B, max_length + 1]: (SMILES, log p of the drawn tokens at T = 1 [B],
    network steps per sample [B]). ``state`` is the network's initial state for the batch."""
    b = u.shape[0]
    prev = torch.full((b,), BOS, dtype=torch.int64, device=u.device)
    done = torch.zeros(b, dtype=torch.bool, device=u.device)
    log_p = torch.zeros(b, dtype=torch.float64, device=u.device)
    calls = torch.zeros(b, dtype=torch.int64, device=u.device)
    drawn = []
    for t in range(max_length + 1):
        logits, state = step(prev, state)
        if t == max_length:  # after max_length characters only EOS is left: the string ends unfinished
            calls += (~done).long()
            break
        tokens, lp = draw_tokens(logits, u[:, t], temperature)
        calls += (~done).long()
        log_p += torch.where(done, 0.0, lp.double())
        tokens = torch.where(done, PAD, tokens)
        drawn.append(tokens)
        done |= tokens == EOS
        prev = tokens
        if bool(done.all()):
            break
    ids = torch.stack(drawn, 1).tolist() if drawn else [[] for _ in range(b)]
    return tuple(vocab.decode(row) for row in ids), log_p, calls


@contextmanager
def evaluation_mode(module: torch.nn.Module):
    """Run a block with ``module`` in eval mode (no dropout), restoring its mode after: sampling and likelihood
    never depend on whether the caller left the model in training mode (a freshly loaded checkpoint is)."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class SmilesLanguageModel(GenerativeModel):
    """A model of SMILES strings as character sequences; subclasses give the network (``training_loss``,
    ``token_log_probs``, ``sample_batch``)."""

    modalities: ClassVar[tuple[str, ...]] = (SMILES,)
    likelihood_kind: ClassVar[str | None] = "exact"
    grad_clip: ClassVar[float | None] = None

    def __init__(self, data_shape, modality, num_classes=None, **config: Any):
        super().__init__(data_shape, modality, num_classes, **config)
        self.check_fits(self.data_shape, modality, num_classes, self.config)
        self.vocab = CharVocab(config["alphabet"])
        self.max_length = int(config["max_length"])

    @classmethod
    def check_fits(cls, data_shape, modality, num_classes, config) -> None:
        super().check_fits(data_shape, modality, num_classes, config)
        alphabet = config.get("alphabet", DEFAULT_ALPHABET)
        if not isinstance(alphabet, str) or not alphabet or len(set(alphabet)) != len(alphabet):
            raise UsageError(f"{cls.family}: alphabet must be a non-empty string of distinct characters; got {alphabet!r}")
        max_length = config.get("max_length", 100)
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise UsageError(f"{cls.family}: max_length must be a positive integer (characters); got {max_length!r}")

    # ------------------------------------------------------------------ sampling options

    @classmethod
    def sampling_options(cls, sampler: str, config: Mapping | None = None) -> dict[str, str]:
        return {TEMPERATURE: TEMPERATURE_MEANING} if sampler == NATIVE else {}

    @classmethod
    def check_sampling_options(cls, sampler: str, options: Mapping, config: Mapping | None = None) -> None:
        super().check_sampling_options(sampler, options, config)
        check_positive_option(cls.family, TEMPERATURE, options)

    # ------------------------------------------------------------------ the network's part

    def training_loss(self, ids: torch.Tensor, step: int, total: int) -> torch.Tensor:
        """The minibatch loss of token ids [B, T + 2] at training step ``step`` of ``total``."""
        raise NotImplementedError

    def token_log_probs(self, ids: torch.Tensor, noise: SeededNoise) -> torch.Tensor:
        """log-likelihood (or bound) [B] in nats of token ids [B, T + 2]."""
        raise NotImplementedError

    def sample_batch(self, noise: SeededNoise, temperature: float) -> tuple[tuple[str, ...], torch.Tensor, torch.Tensor]:
        """(SMILES, log p of the drawn tokens at T = 1 [B], network steps per sample [B])."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the protocol

    def fit(self, data: Molecules, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Adam on minibatches of the training strings that fit the alphabet and ``max_length`` (tokenised per
        minibatch, so a 1.6M-molecule split costs no memory up front); weights re-initialised from ``generator``."""
        if budget.ema:
            raise UsageError(f"{self.family} does not keep an EMA of its weights; remove 'ema' from the recipe's train section")
        init_parameters(self, generator)
        strings = data.x
        keep = [i for i, s in enumerate(strings) if self.vocab.fits(s, self.max_length)]
        if not keep:
            raise UsageError(f"no training SMILES fits {self.family}'s alphabet and max_length {self.max_length}; "
                             "add the characters to the recipe's 'alphabet' or raise 'max_length'")
        step = 0

        def loss(idx: torch.Tensor) -> torch.Tensor:
            nonlocal step
            value = self.training_loss(self.vocab.encode([strings[i] for i in idx.tolist()], self.device), step, budget.steps)
            step += 1
            return value

        report = train_with_adam(self, loss, torch.tensor(keep), budget, generator, progress, grad_clip=self.grad_clip)
        return {**report, "n_train": float(len(keep)), "n_dropped": float(len(strings) - len(keep))}

    @torch.no_grad()
    def log_likelihood(self, x: Sequence[str], noise: SeededNoise | None = None) -> torch.Tensor:
        """log p(s) in nats per molecule (the family's ``likelihood_kind``); -inf where s cannot be drawn."""
        from genbench.models.base import likelihood_noise

        noise = noise if noise is not None else likelihood_noise(len(x))
        out = torch.full((len(x),), -math.inf, dtype=torch.float64)
        fit = [i for i, s in enumerate(x) if self.vocab.fits(s, self.max_length)]
        if fit:
            sub = SeededNoise.__new__(SeededNoise)  # the fitting rows' own generators
            sub.seeds, sub.device, sub.labels = [noise.seeds[i] for i in fit], noise.device, None
            sub._gens = [noise._gens[i] for i in fit]
            ids = self.vocab.encode([x[i] for i in fit], self.device)
            with evaluation_mode(self):
                out[fit] = self.token_log_probs(ids, sub).double().cpu()
        return out

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None,
               temperature: float = 1.0) -> tuple[tuple[str, ...], float]:
        """``len(noise)`` SMILES strings and the mean network steps per sample (see the module doc)."""
        smiles, _, calls = self.sample_with_log_prob(noise, sampler, temperature)
        return smiles, float(calls.double().mean()) if len(calls) else 0.0

    @torch.no_grad()
    def sample_with_log_prob(self, noise: SeededNoise, sampler: str = NATIVE,
                             temperature: float = 1.0) -> tuple[tuple[str, ...], torch.Tensor, torch.Tensor]:
        """(SMILES, log p of the drawn tokens at T = 1 accumulated while drawing [B], network steps [B])."""
        check_choice(sampler, self.supported_samplers(), f"sampler for the {self.family} family")
        self.check_sampling_options(sampler, {TEMPERATURE: temperature})
        with evaluation_mode(self):
            return self.sample_batch(noise, float(temperature))

    def uniforms(self, noise: SeededNoise) -> torch.Tensor:
        """One uniform per position and sample [B, max_length + 1] (sample i from its own generator)."""
        return noise.rand(self.max_length + 1).to(self.device)
