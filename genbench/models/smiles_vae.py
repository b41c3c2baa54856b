"""``smiles_vae``: a variational autoencoder of SMILES strings (Gomez-Bombarelli et al. 2018, "Automatic
Chemical Design Using a Data-Driven Continuous Representation of Molecules"), with GRU encoder and
decoder as in the VAE baseline of MOSES (Polykovskiy et al. 2020).

Encoder q(z | s) = N(mu, diag sigma^2): a GRU over the embedded tokens BOS c_1 .. c_T EOS
(``models/nets/smiles_lm.py``; bidirectional with ``bidirectional``), its last hidden state mapped to
mu and log sigma^2. Prior p(z) = N(0, I). Decoder p(s | z): a GRU of ``dec_layers`` layers whose
initial state is a linear map of z and whose input at every step is the previous token's embedding
concatenated with z; next-token logits over the characters and EOS.

Training minimises recon + beta_k KL (MOSES's objective): recon is the mean cross-entropy per token,
KL = KL(q(z | s) || p(z)) per molecule averaged over the batch, and beta rises linearly from
``kl_start`` to ``kl_end`` over training (MOSES anneals 0 -> 0.05 over epochs; here over steps);
gradients are clipped to norm 50 as in MOSES. The likelihood is the ELBO
log p(s | z) - KL(q || p) in nats per molecule, z = mu + sigma * eps with eps from the example's own
generator (``SeededNoise``), so it does not depend on the batch.

Sampling: z ~ N(0, I) from sample i's generator, then the characters as ``smiles_lm`` draws them (with
the ``temperature`` option). MOSES's VAE: 1-layer GRU encoder of 256, z of 128, 3-layer GRU decoder of
512; recipes size it for the hardware.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import UsageError
from genbench.models.base import MODELS
from genbench.models.nets.smiles_lm import (DEFAULT_ALPHABET, PAD, SmilesLanguageModel, next_token_log_probs, sample_sequences,
                                            sequence_log_probs)
from genbench.seeding import SeededNoise


@MODELS.register("smiles_vae", description="SMILES VAE with GRU encoder/decoder (Gomez-Bombarelli et al. 2018; MOSES); "
                                           "ELBO likelihood, temperature option")
class SmilesVAE(SmilesLanguageModel):
    family = "smiles_vae"
    likelihood_kind = "elbo"
    grad_clip = 50.0

    def __init__(self, data_shape, modality, num_classes=None, embed: int = 32, enc_hidden: int = 256,
                 bidirectional: bool = False, latent_dim: int = 128, dec_hidden: int = 512, dec_layers: int = 3,
                 kl_start: float = 0.0, kl_end: float = 0.05, max_length: int = 100, alphabet: str = DEFAULT_ALPHABET):
        super().__init__(data_shape, modality, num_classes, embed=embed, enc_hidden=enc_hidden, bidirectional=bidirectional,
                         latent_dim=latent_dim, dec_hidden=dec_hidden, dec_layers=dec_layers, kl_start=kl_start,
                         kl_end=kl_end, max_length=max_length, alphabet=alphabet)
        v = len(self.vocab)
        self.embedding = nn.Embedding(v, embed, padding_idx=PAD)
        self.encoder = nn.GRU(embed, enc_hidden, batch_first=True, bidirectional=bidirectional)
        enc_out = enc_hidden * (2 if bidirectional else 1)
        self.to_mu, self.to_logvar = nn.Linear(enc_out, latent_dim), nn.Linear(enc_out, latent_dim)
        self.z_to_h = nn.Linear(latent_dim, dec_hidden)
        self.decoder = nn.GRU(embed + latent_dim, dec_hidden, dec_layers, batch_first=True)
        self.head = nn.Linear(dec_hidden, v)

    @classmethod
    def check_fits(cls, data_shape, modality, num_classes, config: dict[str, Any]) -> None:
        super().check_fits(data_shape, modality, num_classes, config)
        for key in ("embed", "enc_hidden", "latent_dim", "dec_hidden", "dec_layers"):
            value = config.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"smiles_vae: {key} must be a positive integer; got {value!r}")
        if float(config.get("kl_start", 0.0)) < 0 or float(config.get("kl_end", 0.0)) < 0:
            raise UsageError("smiles_vae: kl_start and kl_end (the KL weight's schedule) must be >= 0")

    def encode(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2) [B, latent_dim] of token ids [B, T + 2] (the GRU stops at each string's EOS)."""
        lengths = (ids != PAD).sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        _, h = self.encoder(packed)  # [directions, B, H]
        h = torch.cat(list(h), dim=1)
        return self.to_mu(h), self.to_logvar(h)

    def initial_state(self, z: torch.Tensor) -> torch.Tensor:
        return self.z_to_h(z).unsqueeze(0).repeat(self.config["dec_layers"], 1, 1).contiguous()

    def decode(self, ids: torch.Tensor, z: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token logits [B, L, V] after each token of ids [B, L] given z [B, latent_dim], and the GRU state."""
        e = self.embedding(ids)
        h, state = self.decoder(torch.cat([e, z[:, None, :].expand(-1, e.shape[1], -1)], dim=2), state)
        return self.head(h), state

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, sigma^2) || N(0, I)) per example [B]."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)

    def training_loss(self, ids: torch.Tensor, step: int, total: int) -> torch.Tensor:
        mu, logvar = self.encode(ids)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # global RNG: forked from the training generator
        logits, _ = self.decode(ids[:, :-1], z, self.initial_state(z))
        lp = next_token_log_probs(logits)
        recon = F.nll_loss(lp.reshape(-1, lp.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=PAD)
        start, end = float(self.config["kl_start"]), float(self.config["kl_end"])
        beta = start + (end - start) * step / max(total - 1, 1)
        return recon + beta * self.kl(mu, logvar).mean()

    def token_log_probs(self, ids: torch.Tensor, noise: SeededNoise) -> torch.Tensor:
        """The ELBO log p(s | z) - KL(q || p) [B], one z per example from its own generator."""
        mu, logvar = self.encode(ids)
        z = mu + torch.exp(0.5 * logvar) * noise.randn(mu.shape[1]).to(self.device)
        logits, _ = self.decode(ids[:, :-1], z, self.initial_state(z))
        return sequence_log_probs(logits, ids, self.max_length).sum(1) - self.kl(mu, logvar)

    def sample_batch(self, noise: SeededNoise, temperature: float):
        z = noise.randn(self.config["latent_dim"]).to(self.device)  # z first, then the characters' uniforms
        u = self.uniforms(noise)

        def step(prev: torch.Tensor, state: torch.Tensor):
            logits, state = self.decode(prev[:, None], z, state)
            return logits[:, 0], state

        return sample_sequences(step, self.initial_state(z), u, temperature, self.vocab, self.max_length)
