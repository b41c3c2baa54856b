"""``pixelrnn``: PixelRNN with Row LSTM layers (van den Oord, Kalchbrenner & Kavukcuoglu 2016,
"Pixel Recurrent Neural Networks", section 3.1).

A 7x7 convolution masked type A (``first_kernel``), then ``n_layers`` Row LSTM layers with
residual connections (section 3.4), then two ReLU + type-B 1x1 layers and a 256-way softmax per
sub-pixel (section 2.2). A Row LSTM processes the image one row at a time: its gates for row i are
an input-to-state 1 x k convolution of the layer input masked type B (the current pixel's own
sub-pixels included, later columns excluded) plus a state-to-state 1 x k convolution of the
previous row's hidden state,

    [o, f, i, g] = sigma(K_ss * h_{i-1} + K_is * x_i),  c_i = f . c_{i-1} + i . g,  h_i = o . tanh(c_i)

(paper eq. 3; sigma is the logistic for o, f, i and tanh for g). Its receptive field is the
triangle above the pixel plus the row to its left (the paper's noted limitation; Diagonal BiLSTM
is the other variant, not built here). Sub-pixels of colour images are ordered R, G, B with masked
centre taps, as in the paper.

Sampling reuses the rows already drawn: the LSTM states of rows < i do not change while row i is
drawn, so each of the D draws runs every layer on row i only (from cached states), ``H W C``
one-row passes in all (NFE = D). The likelihood is the exact probability of the 8-bit image.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import UsageError
from genbench.models.base import MODELS
from genbench.models.nets.pixel_ar import (
    N_LEVELS,
    PixelAutoregressive,
    centre_channel_mask,
    channel_groups,
    draw_level,
    log_softmax_levels,
)
from genbench.samplers.base import CountingDenoiser
from genbench.seeding import SeededNoise


class MaskedConv(nn.Conv2d):
    """A kh x kw convolution (kh = 1 or kw) masked as PixelCNN: rows above, the current row left of the
    centre, and at the centre the sub-pixels before (type A) or up to (type B) the output's own."""

    def __init__(self, c_in: int, c_out: int, kh: int, kw: int, mask_type: str, out_groups: torch.Tensor,
                 in_groups: torch.Tensor):
        super().__init__(c_in, c_out, (kh, kw))
        mask = torch.zeros(c_out, c_in, kh, kw)
        mask[:, :, : kh // 2] = 1
        mask[:, :, kh // 2, : kw // 2] = 1
        mask[:, :, kh // 2, kw // 2] = centre_channel_mask(out_groups, in_groups, mask_type)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        return F.conv2d(F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2)), self.weight * self.mask, self.bias)

    def row(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Output row i only, [B, C_out, 1, W], from the kh rows of x around it."""
        kh, kw = self.kernel_size
        window = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2))[:, :, i : i + kh]
        return F.conv2d(window, self.weight * self.mask, self.bias)


class RowLSTM(nn.Module):
    """One Row LSTM layer: input-to-state (masked 1 x k) and state-to-state (1 x k) convolutions."""

    def __init__(self, hidden: int, k: int, n_sub: int):
        super().__init__()
        g_h = channel_groups(hidden, n_sub)
        g_4h = torch.cat([g_h] * 4)  # o, f, i, g gates share the sub-pixel groups of h and c
        self.input_to_state = MaskedConv(hidden, 4 * hidden, 1, k, "B", g_4h, g_h)
        self.state_to_state = nn.Conv2d(hidden, 4 * hidden, (1, k), padding=(0, k // 2))

    def step(self, gates_in: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One row: input-to-state gates [B, 4h, 1, W] and the previous row's (h, c) -> this row's (h, c)."""
        o, f, i, g = (gates_in + self.state_to_state(h)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, h, H, W] -> hidden states [B, h, H, W], row by row."""
        gates = self.input_to_state(x)
        h = c = x.new_zeros(x.shape[0], x.shape[1], 1, x.shape[3])
        rows = []
        for i in range(x.shape[2]):
            h, c = self.step(gates[:, :, i : i + 1], h, c)
            rows.append(h)
        return torch.cat(rows, 2)


@MODELS.register("pixelrnn", description="PixelRNN with Row LSTM layers, 256-way softmax (van den Oord et al. 2016); exact likelihood, NFE = D")
class PixelRNN(PixelAutoregressive):
    family = "pixelrnn"

    def __init__(self, data_shape, modality, num_classes=None, hidden: int = 32, n_layers: int = 2, kernel: int = 3,
                 first_kernel: int = 7, out_hidden: int = 64):
        super().__init__(data_shape, modality, num_classes, hidden=hidden, n_layers=n_layers, kernel=kernel,
                         first_kernel=first_kernel, out_hidden=out_hidden)
        type(self).check_fits(self.data_shape, modality, self.num_classes, self.config)
        c = self.data_shape[0]
        g_x, g_h, g_o = channel_groups(c, c), channel_groups(hidden, c), channel_groups(out_hidden, c)
        self.first = MaskedConv(c, hidden, first_kernel, first_kernel, "A", g_h, g_x)
        self.layers = nn.ModuleList(RowLSTM(hidden, kernel, c) for _ in range(n_layers))
        self.out = nn.Sequential(nn.ReLU(), MaskedConv(hidden, out_hidden, 1, 1, "B", g_o, g_h), nn.ReLU(),
                                 MaskedConv(out_hidden, c * N_LEVELS, 1, 1, "B", channel_groups(c * N_LEVELS, c), g_o))

    @classmethod
    def check_fits(cls, data_shape, modality, num_classes, config: dict[str, Any]) -> None:
        c = data_shape[0] if data_shape else 1
        if int(config.get("n_layers", 2)) < 1 or int(config.get("hidden", 32)) % c or int(config.get("out_hidden", 64)) % c:
            raise UsageError(f"pixelrnn needs n_layers >= 1 and hidden, out_hidden multiples of the {c} sub-pixels")
        if int(config.get("kernel", 3)) % 2 == 0 or int(config.get("first_kernel", 7)) % 2 == 0:
            raise UsageError("pixelrnn kernels must be odd (kernel, first_kernel); fix the recipe's config")

    def logits_of_images(self, x: torch.Tensor) -> torch.Tensor:
        """Images x [B, C, H, W] in [-1, 1] -> logits [B, C*256, H, W] (differentiable in x, for the tests)."""
        h = self.first(x)
        for layer in self.layers:
            h = h + layer(h)
        return self.out(h)

    def level_log_probs(self, k: torch.Tensor) -> torch.Tensor:
        return log_softmax_levels(self.logits_of_images(k.float() / 127.5 - 1))

    def row_logits(self, x: torch.Tensor, i: int, states: list[tuple[torch.Tensor, torch.Tensor]]):
        """Logits of row i [B, C*256, 1, W] from images x and each layer's (h, c) of row i - 1; also row i's states."""
        h = self.first.row(x, i)
        new_states = []
        for layer, (h_prev, c_prev) in zip(self.layers, states):
            h_row, c_row = layer.step(layer.input_to_state(h), h_prev, c_prev)
            new_states.append((h_row, c_row))
            h = h + h_row
        return self.out(h), new_states

    @torch.no_grad()
    def sample_levels(self, noise: SeededNoise) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Row-cached sampling: one one-row pass of every layer per sub-pixel, states carried between rows."""
        c_n, height, width = self.data_shape
        u = noise.rand(self.d).to(self.device)
        k = torch.zeros(len(noise), c_n, height, width, dtype=torch.long, device=self.device)
        log_p = torch.zeros(len(noise), dtype=torch.float64, device=self.device)
        hidden = self.config["hidden"]
        zero = torch.zeros(len(noise), hidden, 1, width, device=self.device)
        states = [(zero, zero) for _ in self.layers]
        net = CountingDenoiser(lambda i_, _: self.row_logits(k.float() / 127.5 - 1, i_, states))
        for i in range(height):
            for j in range(width):
                for ch in range(c_n):
                    logits, row_states = net(i, None)
                    lp = log_softmax_levels(logits)[:, j * c_n + ch]
                    k[:, ch, i, j] = draw_level(lp, u[:, (i * width + j) * c_n + ch])
                    log_p += lp.gather(1, k[:, ch, i, j, None]).squeeze(1).double()
            # the last pass of row i did not depend on its last sub-pixel: its states are row i's
            states[:] = row_states
        return k, log_p, float(net.calls)

