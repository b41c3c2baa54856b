"""``charrnn``: an LSTM language model over SMILES characters (Segler et al. 2018, "Generating Focused
Molecule Libraries for Drug Discovery with Recurrent Neural Networks"; the CharRNN baseline of MOSES,
Polykovskiy et al. 2020).

Tokens c_0 = BOS, c_1 .. c_T, c_{T+1} = EOS (``models/nets/smiles_lm.py``); a learned character
embedding feeds ``n_layers`` LSTM layers of ``hidden`` units (dropout between layers) and a linear map
to next-token logits. Training minimises the mean cross-entropy per token (teacher forcing), as MOSES
does, over the distribution the likelihood and the sampler use (characters and EOS). The likelihood is exact: log p(s) = sum_t log p(c_t | c_<t) in nats per molecule, the same sum
the sampler accumulates while it draws (``sample_with_log_prob``). MOSES's CharRNN has 3 layers of
768 units and dropout 0.2; recipes size it for the hardware.
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


@MODELS.register("charrnn", description="CharRNN: LSTM over SMILES characters (Segler et al. 2018; MOSES); exact likelihood, "
                                        "temperature option")
class CharRNN(SmilesLanguageModel):
    family = "charrnn"
    likelihood_kind = "exact"

    def __init__(self, data_shape, modality, num_classes=None, hidden: int = 768, n_layers: int = 3, embed: int = 32,
                 dropout: float = 0.2, max_length: int = 100, alphabet: str = DEFAULT_ALPHABET):
        super().__init__(data_shape, modality, num_classes, hidden=hidden, n_layers=n_layers, embed=embed,
                         dropout=dropout, max_length=max_length, alphabet=alphabet)
        v = len(self.vocab)
        self.embedding = nn.Embedding(v, embed)
        self.lstm = nn.LSTM(embed, hidden, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)
        self.head = nn.Linear(hidden, v)

    @classmethod
    def check_fits(cls, data_shape, modality, num_classes, config: dict[str, Any]) -> None:
        super().check_fits(data_shape, modality, num_classes, config)
        for key in ("hidden", "n_layers", "embed"):
            value = config.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"charrnn: {key} must be a positive integer; got {value!r}")
        if not 0.0 <= float(config.get("dropout", 0.0)) < 1.0:
            raise UsageError(f"charrnn: dropout must lie in [0, 1); got {config.get('dropout')!r}")

    def forward(self, ids: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """Next-token logits [B, L, V] after each token of ids [B, L], and the LSTM state."""
        h, state = self.lstm(self.embedding(ids), state)
        return self.head(h), state

    def training_loss(self, ids: torch.Tensor, step: int, total: int) -> torch.Tensor:
        logits, _ = self(ids[:, :-1])  # [B, T + 1, V]
        lp = next_token_log_probs(logits)  # the distribution the likelihood and the sampler use
        return F.nll_loss(lp.reshape(-1, lp.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=PAD)

    def token_log_probs(self, ids: torch.Tensor, noise: SeededNoise) -> torch.Tensor:
        logits, _ = self(ids[:, :-1])
        return sequence_log_probs(logits, ids, self.max_length).sum(1)

    def sample_batch(self, noise: SeededNoise, temperature: float):
        def step(prev: torch.Tensor, state: Any):
            logits, state = self(prev[:, None], state)
            return logits[:, 0], state

        return sample_sequences(step, None, self.uniforms(noise), temperature, self.vocab, self.max_length)
