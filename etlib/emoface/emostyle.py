"""EmoStyle's EmoExtract (Azari & Lim 2024, "EmoStyle: One-Shot Facial Expression Editing Using Continuous
Emotion Parameters") [4]: the emotional latent code ``W' = W + d`` of g_LEF (Eq. 6, Sec. S2.1).

EmoStyle inverts the source image I into StyleGAN2's W+ (see :func:`etlib.emoface.stylegan2.invert`),
up-samples the valence/arousal input ``e`` (2-d) to the emotion feature ``f_emo`` with a small MLP
(2 -> 32 -> 64), and EmoExtract ``M`` maps ``f_emo (+) W`` to the emotion modification ``d``; ``W' = W + d``.

Layout, following the published ``models/emo_mapping.py`` so EmoStyle's checkpoints load by key:

* ``emotion_enc`` = ``Linear(2, 32), LeakyReLU(0.2), Linear(32, emotion_dim)``;
* per-layer (``EmoMappingWplus``): ``latent_net.{i}`` = ``Linear(emotion_dim + D, 2048), LReLU,
  Linear(2048, 1024), LReLU, Linear(1024, 512), LReLU, Linear(512, D)`` - one MLP per W+ row;
* shared (``EmoMappingW``, the layout of the released ``emo_mapping_w.pt``): one ``latent_net`` MLP
  applied to every row.

EmoStyle's checkpoint stores the state under ``"emo_mapping_state_dict"``; a bare state_dict also loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

#: EmoStyle's widths: emotion feature 64, hidden layers of the EmoExtract MLP.
EMOTION_DIM = 64
HIDDEN = (2048, 1024, 512)


def _mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """``Linear, LeakyReLU(0.2), ..., Linear`` (EmoStyle's MLP layout: weights at even indices)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.LeakyReLU(0.2)]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class EmoExtract(nn.Module):
    """EmoExtract ``M``: ``d = M(f_emo (+) W)`` with ``f_emo = up(e)`` (Sec. S2.1).

    Args:
        num_ws: rows of W+ (18 for a 1024px StyleGAN2).
        latent_dim: width of a W row (512).
        emotion_dim: width of ``f_emo`` (64).
        hidden: hidden widths of each row's MLP (EmoStyle: 2048, 1024, 512).
        per_layer: one MLP per W+ row (EmoMappingWplus) or one shared MLP (EmoMappingW).
    """

    def __init__(
        self,
        num_ws: int,
        latent_dim: int = 512,
        emotion_dim: int = EMOTION_DIM,
        hidden: Sequence[int] = HIDDEN,
        per_layer: bool = True,
    ):
        super().__init__()
        self.num_ws, self.latent_dim, self.emotion_dim = num_ws, latent_dim, emotion_dim
        self.hidden, self.per_layer = tuple(hidden), per_layer
        self.emotion_enc = _mlp(2, (32,), emotion_dim)
        if per_layer:
            self.latent_net = nn.ModuleList(_mlp(emotion_dim + latent_dim, hidden, latent_dim) for _ in range(num_ws))
        else:
            self.latent_net = _mlp(emotion_dim + latent_dim, hidden, latent_dim)

    def emotion_features(self, e: torch.Tensor) -> torch.Tensor:
        """``f_emo [B, emotion_dim]`` from valence/arousal ``e [B, 2]``."""
        if e.ndim != 2 or e.shape[1] != 2:
            raise ValueError(f"valence/arousal e must be [B, 2], got {tuple(e.shape)}")
        return self.emotion_enc(e)

    def forward(self, w: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Emotion modification ``d [B, num_ws, D]`` for W+ ``w [B, num_ws, D]`` and ``e [B, 2]``."""
        if w.ndim != 3 or w.shape[1:] != (self.num_ws, self.latent_dim):
            raise ValueError(f"W+ must be [B, {self.num_ws}, {self.latent_dim}], got {tuple(w.shape)}")
        if e.shape[0] != w.shape[0]:
            raise ValueError(f"batch sizes differ: W+ {w.shape[0]}, e {e.shape[0]}")
        f_emo = self.emotion_features(e.to(w))
        rows = []
        for i in range(self.num_ws):
            net = self.latent_net[i] if self.per_layer else self.latent_net
            rows.append(net(torch.cat((w[:, i], f_emo), dim=1)))
        return torch.stack(rows, dim=1)

    def edit(self, w: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """``W' = W + d`` (Sec. S2.1)."""
        return w + self(w, e)


def emoextract_config_from_state(state: dict[str, torch.Tensor]) -> dict:
    """Infer ``num_ws``, ``latent_dim``, ``emotion_dim``, ``hidden`` and ``per_layer`` from EmoStyle's keys."""
    if "emotion_enc.2.weight" not in state:
        raise ValueError(f"no 'emotion_enc.2.weight' key (found e.g. {list(state)[:5]})")
    emotion_dim = state["emotion_enc.2.weight"].shape[0]
    per_layer = "latent_net.0.0.weight" in state
    prefix = "latent_net.0." if per_layer else "latent_net."
    linears = sorted(
        int(k[len(prefix) :].split(".")[0])
        for k in state
        if k.startswith(prefix) and k.endswith(".weight") and k[len(prefix) :].split(".")[0].isdigit()
    )
    if not linears:
        raise ValueError("no latent_net layers found")
    shapes = [state[f"{prefix}{i}.weight"].shape for i in linears]
    latent_dim = shapes[-1][0]
    hidden = tuple(s[0] for s in shapes[:-1])
    num_ws = len({k.split(".")[1] for k in state if k.startswith("latent_net.")}) if per_layer else None
    return {
        "num_ws": num_ws,
        "latent_dim": int(latent_dim),
        "emotion_dim": int(emotion_dim),
        "hidden": hidden,
        "per_layer": per_layer,
    }


def save_emoextract(module: EmoExtract, path: str | Path) -> Path:
    """Write ``{"emo_mapping_state_dict": state_dict}``, the layout of EmoStyle's checkpoints."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"emo_mapping_state_dict": module.state_dict()}, path)
    return path


def load_emoextract(path: str | Path | None = None, num_ws: int = 18) -> EmoExtract:
    """Load EmoExtract from an EmoStyle checkpoint (default: registry entry ``emostyle``).

    ``num_ws`` is the generator's W+ depth; a shared-MLP checkpoint is applied to that many rows, a
    per-layer one must have exactly that many. Raises ``FileNotFoundError`` / ``WeightsMissingError``
    for a missing file and ``ValueError`` naming the problem for a wrong one.
    """
    if path is None:
        from etlib.weights import ensure

        path = ensure("emostyle")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EmoStyle checkpoint {path} does not exist (see the EmoStyle README for the files)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"cannot read {path} as a torch checkpoint: {err}") from err
    state = ckpt.get("emo_mapping_state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} is not an EmoStyle checkpoint: expected a state_dict under 'emo_mapping_state_dict'")
    try:
        config = emoextract_config_from_state(state)
    except ValueError as err:
        raise ValueError(f"{path} is not an EmoStyle EmoExtract checkpoint: {err}") from err
    if config["num_ws"] is None:
        config["num_ws"] = num_ws
    elif config["num_ws"] != num_ws:
        raise ValueError(f"{path} has {config['num_ws']} per-layer MLPs but the generator's W+ has {num_ws} rows")
    module = EmoExtract(**config)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise ValueError(f"{path}: shapes differ (key, file, expected): {wrong[:5]}")
    module.load_state_dict(state)
    return module
