"""Audio encoding and region attention (Sec. 3.2, Eqs. 4-5, S7).

* :class:`AudioNet` compresses one frame's window of audio features ``(C, W)`` into a vector
  (TalkingGaussian/ER-NeRF's ``AudioNet``: strided 1-D convolutions, then two linear layers).
* :class:`AudioAttNet` smooths the per-frame vectors of a short window of frames (8 in the paper's
  pipeline) with temporal attention: 1-D convolutions over the window give one score a frame, a linear
  layer and a softmax turn the scores into weights that sum to 1, and the output is the weighted sum.
* :class:`RegionAttention` predicts a per-Gaussian, per-channel attention map ``A(mu)`` from the
  hash-encoded position and applies it as a Hadamard product, e.g. ``a_r = A_a ⊙ a`` (Eq. 4),
  ``u_r = A_u ⊙ u`` (Eq. 4), ``e_r = A_e ⊙ e`` (Eq. 5). Fig. S7 visualises these maps.

The layer sizes follow TalkingGaussian's ``scene/motion_net.py``; the code is written anew here.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Activation = Literal["none", "relu", "sigmoid"]


class MLP(nn.Module):
    """Bias-free ReLU MLP (as TalkingGaussian's ``MLP``): ``n_layers`` linear layers, ReLU between them."""

    def __init__(self, dim_in: int, dim_out: int, dim_hidden: int, n_layers: int) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"an MLP needs at least one layer, got n_layers={n_layers}")
        dims = [dim_in] + [dim_hidden] * (n_layers - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:]))
        # He init keeps activations at the input's scale through the ReLUs (PyTorch's default shrinks
        # them ~4x a layer, which slows the short CPU presets' training noticeably).
        for layer in self.layers[:-1]:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")

    @property
    def output_layer(self) -> nn.Linear:
        return self.layers[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class AudioNet(nn.Module):
    """Compress one frame's audio-feature window ``(B, C, W)`` into ``(B, dim_out)``.

    ``log2(W)`` stride-2 convolutions halve the window down to one step (W = 16 gives TalkingGaussian's
    29 -> 32 -> 32 -> 64 -> 64 stack for DeepSpeech); W = 1 (one feature vector a frame) skips them.
    """

    def __init__(self, dim_in: int, dim_out: int = 32, win_size: int = 16) -> None:
        super().__init__()
        if win_size < 1 or win_size & (win_size - 1):
            raise ValueError(f"win_size must be a power of two (the convs halve it to 1), got {win_size}")
        self.dim_in, self.dim_out, self.win_size = dim_in, dim_out, win_size
        channels = [dim_in] + [32 if i < 2 else 64 for i in range(int(math.log2(win_size)))]
        convs: list[nn.Module] = []
        for a, b in zip(channels[:-1], channels[1:]):
            convs += [nn.Conv1d(a, b, kernel_size=3, stride=2, padding=1), nn.LeakyReLU(0.02)]
        self.encoder_conv = nn.Sequential(*convs)
        self.encoder_fc = nn.Sequential(nn.Linear(channels[-1], 64), nn.LeakyReLU(0.02), nn.Linear(64, dim_out))
        # He init and zero biases: with PyTorch's defaults the six layers shrink the signal ~100x and
        # the biases dominate, so different audio windows start out almost indistinguishable.
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, a=0.02, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.dim_in or x.shape[2] != self.win_size:
            raise ValueError(
                f"expected audio features of shape (B, {self.dim_in}, {self.win_size}), got {tuple(x.shape)}"
            )
        return self.encoder_fc(self.encoder_conv(x).squeeze(-1))


class AudioAttNet(nn.Module):
    """Temporal attention over a window of ``seq_len`` frames: ``(B, T, C) -> (B, C)``, weights sum to 1."""

    def __init__(self, dim: int = 32, seq_len: int = 8) -> None:
        super().__init__()
        self.dim, self.seq_len = dim, seq_len
        channels = [dim, 16, 8, 4, 2, 1]
        layers: list[nn.Module] = []
        for a, b in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv1d(a, b, kernel_size=3, stride=1, padding=1), nn.LeakyReLU(0.02)]
        self.score_conv = nn.Sequential(*layers)
        self.score_fc = nn.Linear(seq_len, seq_len)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax weights of the frames of the window, ``(B, T)``."""
        if x.ndim != 3 or x.shape[1:] != (self.seq_len, self.dim):
            raise ValueError(f"expected (B, {self.seq_len}, {self.dim}) frame features, got {tuple(x.shape)}")
        scores = self.score_conv(x.transpose(1, 2)).squeeze(1)  # (B, T)
        return torch.softmax(self.score_fc(scores), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.weights(x).unsqueeze(-1) * x).sum(dim=1)


class AudioEncoder(nn.Module):
    """The audio feature ``a`` of a frame: :class:`AudioNet` on each frame of the window, then :class:`AudioAttNet`.

    Input ``(T, C, W)`` (one frame) or ``(B, T, C, W)``; output ``(dim_out,)`` or ``(B, dim_out)``.
    """

    def __init__(self, dim_in: int, dim_out: int = 32, win_size: int = 16, seq_len: int = 8) -> None:
        super().__init__()
        self.audio_net = AudioNet(dim_in, dim_out, win_size)
        self.attention = AudioAttNet(dim_out, seq_len)
        self.dim_in, self.dim_out, self.win_size, self.seq_len = dim_in, dim_out, win_size, seq_len

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        single = window.ndim == 3
        batch = window.unsqueeze(0) if single else window
        if batch.ndim != 4 or batch.shape[1:] != (self.seq_len, self.dim_in, self.win_size):
            raise ValueError(
                f"expected an audio window of shape (T={self.seq_len}, C={self.dim_in}, W={self.win_size}) "
                f"or (B, T, C, W), got {tuple(window.shape)}"
            )
        b, t = batch.shape[:2]
        per_frame = self.audio_net(batch.reshape(b * t, self.dim_in, self.win_size)).view(b, t, self.dim_out)
        smoothed = self.attention(per_frame)
        return smoothed[0] if single else smoothed


class RegionAttention(nn.Module):
    """Per-Gaussian attention map ``A(mu) = act(MLP(H(mu)) + b)`` applied as ``c_r = A ⊙ c`` (Eqs. 4-5).

    Args:
        feature_dim: size of the hash-encoded position ``H(mu)``.
        cond_dim: size of the condition (audio feature, action units or valence/arousal).
        hidden: hidden width of the two-layer MLP.
        activation: on the map; TalkingGaussian uses ``"none"`` for audio and ``"relu"`` for the eyes.
        init_bias: ``None`` (TalkingGaussian's bias-free map, ``b = 0``) or the initial value of a learnable
            per-channel bias ``b``. A ReLU map of a bias-free MLP starts near 0 everywhere, and a condition
            multiplied by ~0 gets almost no gradient; ``init_bias=1`` starts every Gaussian listening to the
            condition (``A ≈ 1``) and lets training learn where to stop (the emotion branch uses it).
    """

    def __init__(
        self,
        feature_dim: int,
        cond_dim: int,
        hidden: int = 32,
        activation: Activation = "none",
        init_bias: float | None = None,
    ) -> None:
        super().__init__()
        if activation not in ("none", "relu", "sigmoid"):
            raise ValueError(f"activation must be 'none', 'relu' or 'sigmoid', got {activation!r}")
        self.cond_dim, self.activation = cond_dim, activation
        self.mlp = MLP(feature_dim, cond_dim, hidden, 2)
        self.bias = None if init_bias is None else nn.Parameter(torch.full((cond_dim,), float(init_bias)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Checkpoints saved before the bias existed load with b = 0: exactly the map they were trained with.
        if self.bias is not None and prefix + "bias" not in state_dict:
            state_dict[prefix + "bias"] = torch.zeros_like(self.bias)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def attention_map(self, features: torch.Tensor) -> torch.Tensor:
        """``A``: ``(N, cond_dim)`` from ``(N, feature_dim)`` hash features."""
        raw = self.mlp(features)
        if self.bias is not None:
            raw = raw + self.bias
        if self.activation == "relu":
            return F.relu(raw)
        if self.activation == "sigmoid":
            return torch.sigmoid(raw)
        return raw

    def forward(self, features: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Region-aware condition ``A ⊙ cond`` and the map ``A``, both ``(N, cond_dim)``."""
        cond = as_condition(cond, self.cond_dim, "condition")
        att = self.attention_map(features)
        return att * cond, att


def as_condition(value: torch.Tensor, dim: int, name: str) -> torch.Tensor:
    """A per-frame condition as a ``(1, dim)`` row that broadcasts over the Gaussians."""
    if value.ndim == 1:
        value = value.unsqueeze(0)
    if value.ndim != 2 or value.shape != (1, dim):
        raise ValueError(f"{name} must have shape ({dim},) or (1, {dim}), got {tuple(value.shape)}")
    return value
