"""Shared networks and training helpers for the model families.

- ``mlp.MLP(in_dim, out_dim, hidden, depth, cond_dim=0, dropout=0.0)``: residual SiLU MLP, optional
  additive conditioning vector; ``mlp.TimeConditionedMLP(in_dim, out_dim, hidden, depth, emb_dim,
  t_scale=1000.0)``: forward(x, t) with a sinusoidal embedding of the scalar t.
- ``unet.UNet(in_channels, out_channels=None, channels=64, channel_mult=(1, 2), num_res_blocks=2,
  attn_levels=(), ...)``: forward(x, t) for images (odd sizes allowed).
- ``embeddings.sinusoidal_embedding(t, dim)`` and ``SinusoidalEmbedding``.
- ``training``: ``init_parameters(module, generator)``, ``train_with_adam(...)``, ``update_ema``,
  ``minibatch_indices``, ``dequantise_images``: deterministic given the fit's generator.
"""
