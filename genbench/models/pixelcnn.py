"""``pixelcnn``: Gated PixelCNN (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu 2016,
"Conditional Image Generation with PixelCNN Decoders").

Two stacks remove the blind spot of the original PixelCNN: a vertical stack whose output at row i
sees the rows <= i (a (k//2 + 1) x k convolution), fed to the horizontal stack shifted down one row
(so row i sees only rows < i), and a horizontal stack whose output at (i, j) sees row i up to
column j (a 1 x (k//2 + 1) convolution). Every layer is gated, y = tanh(a) * sigmoid(b) (paper
eq. 2), and the horizontal stack is residual. The first layer is masked type A (the current pixel
is excluded; ``first_kernel`` wide), the others type B (the current pixel's earlier sub-pixels and
its own features included). With several colour channels each feature channel belongs to one
sub-pixel and the centre taps are masked between channels (R before G before B, as PixelCNN).

Output: a 256-way softmax per sub-pixel (the PixelRNN/PixelCNN choice, not PixelCNN++'s
discretised logistic mixture), after two ReLU + type-B 1x1 layers. The likelihood is the exact
probability of the 8-bit image (see ``genbench.models.nets.pixel_ar``). Sampling: D passes
(784 on 28x28) of the horizontal stack and output layers over the drawn row alone; the vertical
stack's links into a row do not change while it is drawn, so they are computed once per row from
the rows that reach it (1 + first_kernel // 2 + (n_layers - 1) (kernel // 2) rows above). Recipes
still keep the network small and suites keep n modest on 28x28.
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


class CausalConv(nn.Conv2d):
    """A convolution that sees a causal window of the input, with the centre tap masked between sub-pixels.

    ``stack="vertical"``: kernel (k//2 + 1) x k, output row i sees input rows i - k//2 .. i (all columns
    of the window). ``stack="horizontal"``: kernel 1 x (k//2 + 1), output (i, j) sees row i, columns
    j - k//2 .. j; the last tap is the current pixel, masked by sub-pixel (type A excludes the pixel's
    own sub-pixel, type B includes it). A 1x1 horizontal convolution is a type-B (or A) 1x1 layer.
    """

    def __init__(self, c_in: int, c_out: int, k: int, stack: str, mask_type: str, out_groups: torch.Tensor,
                 in_groups: torch.Tensor):
        shape = (k // 2 + 1, k) if stack == "vertical" else (1, k // 2 + 1)
        super().__init__(c_in, c_out, shape)
        self.stack, self.k = stack, k
        mask = torch.ones(c_out, c_in, *shape)
        if stack == "horizontal":
            mask[:, :, 0, -1] = centre_channel_mask(out_groups, in_groups, mask_type)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.k // 2
        # pad (left, right, top, bottom) so the window ends at the current row / column
        pad = (p, p, p, 0) if self.stack == "vertical" else (p, 0, 0, 0)
        return F.conv2d(F.pad(x, pad), self.weight * self.mask, self.bias)


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """Row i receives row i - 1 (zeros in row 0): vertical features of rows < i only."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def gate(a: torch.Tensor) -> torch.Tensor:
    """tanh(first half) * sigmoid(second half) over channels."""
    t, s = a.chunk(2, dim=1)
    return torch.tanh(t) * torch.sigmoid(s)


class GatedLayer(nn.Module):
    """One gated layer of both stacks (paper figure 2)."""

    def __init__(self, c_in: int, hidden: int, k: int, mask_type: str, n_sub: int):
        super().__init__()
        g_in, g_h = channel_groups(c_in, n_sub), channel_groups(hidden, n_sub)
        g_2h = torch.cat([g_h, g_h])  # tanh and sigmoid halves share the groups
        self.residual = mask_type == "B"
        self.v = CausalConv(c_in, 2 * hidden, k, "vertical", mask_type, g_2h, g_in)
        self.h = CausalConv(c_in, 2 * hidden, k, "horizontal", mask_type, g_2h, g_in)
        # vertical -> horizontal link: rows < i, every sub-pixel may see it
        self.v_to_h = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.h_out = CausalConv(hidden, hidden, 1, "horizontal", "B", g_h, g_h)

    def vertical(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Vertical stack: its pre-activation (for the link to the horizontal stack) and its output."""
        v_pre = self.v(v)
        return v_pre, gate(v_pre)

    def horizontal(self, h: torch.Tensor, v_pre_above: torch.Tensor) -> torch.Tensor:
        """Horizontal stack, given the vertical pre-activation of the rows above (already shifted down)."""
        h_new = self.h_out(gate(self.h(h) + self.v_to_h(v_pre_above)))
        return h + h_new if self.residual else h_new

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_pre, v_out = self.vertical(v)
        return v_out, self.horizontal(h, shift_down(v_pre))


@MODELS.register("pixelcnn", description="Gated PixelCNN, vertical + horizontal stacks, 256-way softmax (van den Oord et al. 2016); exact likelihood, NFE = D")
class GatedPixelCNN(PixelAutoregressive):
    family = "pixelcnn"

    def __init__(self, data_shape, modality, num_classes=None, hidden: int = 32, n_layers: int = 5, kernel: int = 3,
                 first_kernel: int = 7, out_hidden: int = 64):
        super().__init__(data_shape, modality, num_classes, hidden=hidden, n_layers=n_layers, kernel=kernel,
                         first_kernel=first_kernel, out_hidden=out_hidden)
        type(self).check_fits(self.data_shape, modality, self.num_classes, self.config)
        c = self.data_shape[0]
        self.layers = nn.ModuleList([GatedLayer(c, hidden, first_kernel, "A", c)] +
                                    [GatedLayer(hidden, hidden, kernel, "B", c) for _ in range(n_layers - 1)])
        g_h, g_o, g_out = channel_groups(hidden, c), channel_groups(out_hidden, c), channel_groups(c * N_LEVELS, c)
        self.out = nn.Sequential(nn.ReLU(), CausalConv(hidden, out_hidden, 1, "horizontal", "B", g_o, g_h), nn.ReLU(),
                                 CausalConv(out_hidden, c * N_LEVELS, 1, "horizontal", "B", g_out, g_o))

    @classmethod
    def check_fits(cls, data_shape, modality, num_classes, config: dict[str, Any]) -> None:
        if int(config.get("n_layers", 5)) < 1 or int(config.get("hidden", 32)) < 1:
            raise UsageError("pixelcnn needs n_layers >= 1 and hidden >= 1; fix the recipe's config")
        c = data_shape[0] if data_shape else 1
        if int(config.get("hidden", 32)) % c or int(config.get("out_hidden", 64)) % c:
            raise UsageError(f"pixelcnn splits its channels between the {c} sub-pixels: hidden and out_hidden must be multiples of {c}")
        if int(config.get("kernel", 3)) % 2 == 0 or int(config.get("first_kernel", 7)) % 2 == 0:
            raise UsageError("pixelcnn kernels must be odd (kernel, first_kernel); fix the recipe's config")

    def logits_of_images(self, x: torch.Tensor) -> torch.Tensor:
        """Images x [B, C, H, W] in [-1, 1] -> logits [B, C*256, H, W] (differentiable in x, for the tests)."""
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h)
        return self.out(h)

    def level_log_probs(self, k: torch.Tensor) -> torch.Tensor:
        return log_softmax_levels(self.logits_of_images(k.float() / 127.5 - 1))

    def rows_above_in_view(self) -> int:
        """How many rows above row i reach its output: the shift into the horizontal stack, then each
        vertical convolution's k // 2 rows."""
        cfg = self.config
        return 1 + cfg["first_kernel"] // 2 + (cfg["n_layers"] - 1) * (cfg["kernel"] // 2)

    def links_into_row(self, k: torch.Tensor, i: int) -> list[torch.Tensor]:
        """Each layer's vertical pre-activation at row i - 1 [B, 2h, 1, W] (zeros for i = 0): what the
        horizontal stack of row i receives. Computed from the rows that reach row i only (cropping the
        rows above them changes nothing but the cost)."""
        top = max(0, i - self.rows_above_in_view())
        v = k[:, :, top : i + 1].float() / 127.5 - 1
        links = []
        for layer in self.layers:
            v_pre, v = layer.vertical(v)
            links.append(shift_down(v_pre)[:, :, -1:])
        return links

    def row_log_probs(self, k: torch.Tensor, i: int, links: list[torch.Tensor]) -> torch.Tensor:
        """log-probabilities [B, W*C, 256] of row i: the horizontal stack and output layers on row i alone."""
        h = k[:, :, i : i + 1].float() / 127.5 - 1
        for layer, link in zip(self.layers, links):
            h = layer.horizontal(h, link)
        return log_softmax_levels(self.out(h))

    @torch.no_grad()
    def sample_levels(self, noise: SeededNoise) -> tuple[torch.Tensor, torch.Tensor, float]:
        """D passes of the horizontal stack over the drawn row; the vertical stack's links into a row do not
        change while the row is drawn, so they are computed once per row (from its receptive field)."""
        c_n, height, width = self.data_shape
        u = noise.rand(self.d).to(self.device)
        k = torch.zeros(len(noise), c_n, height, width, dtype=torch.long, device=self.device)
        log_p = torch.zeros(len(noise), dtype=torch.float64, device=self.device)
        links: list[torch.Tensor] = []
        net = CountingDenoiser(lambda i_, _: self.row_log_probs(k, i_, links))
        for i in range(height):
            links[:] = self.links_into_row(k, i)
            for j in range(width):
                for ch in range(c_n):
                    lp = net(i, None)[:, j * c_n + ch]
                    k[:, ch, i, j] = draw_level(lp, u[:, (i * width + j) * c_n + ch])
                    log_p += lp.gather(1, k[:, ch, i, j, None]).squeeze(1).double()
        return k, log_p, float(net.calls)
