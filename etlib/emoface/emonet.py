"""EmoNet (Toisoul et al. 2021, Nature Machine Intelligence) [61]: the paper's emotion judge.

EmoNet returns 8 expression logits, valence and arousal for a 256x256 RGB face crop in [0, 1]. The
paper uses it for L_emo (Eq. S4) when training g_LEF and for V-RMSE / A-RMSE / V-SA / A-SA and the
emotion accuracy (Eqs. S17-S18, Table 3).

Architecture, as published (face-analysis/emonet), written here from its description:

* a face-alignment network (FAN, Bulat & Tzimiropoulos 2017): a 7x7 stride-2 stem, three bottleneck
  blocks with a 2x max-pool, then two stacked depth-4 hourglasses over 256 channels, each followed by a
  block, a 1x1 conv + batch norm + ReLU and a 1x1 conv to 68 landmark heatmaps; between the stacks the
  features and the re-embedded heatmaps are added back (the usual stacked-hourglass skip);
* the emotion head: the stem features and both stacks' features, the latter multiplied by the summed
  heatmaps (landmark attention), are concatenated (768 channels), reduced by a 1x1 conv to 256, passed
  through four (block, 2x max-pool) pairs to 4x4, averaged, and mapped by Linear-BN-ReLU-Linear to
  ``n_expression + 2`` numbers: the expression logits, then valence, then arousal.

Every normalisation layer of the published model is a ``BatchNorm2d`` (its code aliases
``InstanceNorm2d`` to it), so the running statistics are part of the checkpoint. Module names below
follow the published checkpoint's state_dict keys (``m0.b1_4.conv1.weight``, ``emo_fc_2.3.bias``...),
so ``emonet_8.pth`` loads without renaming. The published code's optional temporal smoothing is a
video post-filter, not a layer, and is left out.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: Class order of EmoNet's 8-way head (face-analysis/emonet demo).
EMONET_CLASSES_8: tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
#: The 5-way variant's classes are the first five.
EMONET_CLASSES_5: tuple[str, ...] = EMONET_CLASSES_8[:5]
EMONET_INPUT_SIZE = 256
N_LANDMARKS = 68


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


class ConvBlock(nn.Module):
    """FAN's pre-activation bottleneck: three BN-ReLU-conv3x3 stages of out/2, out/4, out/4 channels,
    concatenated (so the output has ``out`` channels), plus the (projected) input."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        half, quarter = c_out // 2, c_out // 4
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), _conv3x3(c_in, half)
        self.bn2, self.conv2 = nn.BatchNorm2d(half), _conv3x3(half, quarter)
        self.bn3, self.conv3 = nn.BatchNorm2d(quarter), _conv3x3(quarter, quarter)
        self.downsample = None
        if c_in != c_out:  # indices 0 and 2 carry the weights, as in the checkpoint
            self.downsample = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        skip = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), dim=1) + skip


class HourGlass(nn.Module):
    """A depth-``depth`` hourglass over ``features`` channels.

    Level ``k`` (from ``depth`` down to 1) has a full-resolution branch ``b1_k`` and a half-resolution
    branch ``b2_k``; the innermost level adds ``b2_plus_1``; on the way up ``b3_k`` refines before the
    nearest-neighbour 2x upsampling that is added to ``b1_k``'s output.
    """

    def __init__(self, depth: int = 4, features: int = 256):
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
            if level == 1:
                self.add_module("b2_plus_1", ConvBlock(features, features))
            self.add_module(f"b3_{level}", ConvBlock(features, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % (2**self.depth) or x.shape[-2] % (2**self.depth):
            raise ValueError(f"hourglass input {tuple(x.shape[-2:])} must be divisible by {2**self.depth}")
        skips = []
        for level in range(self.depth, 0, -1):  # down
            skips.append(self.get_submodule(f"b1_{level}")(x))
            x = self.get_submodule(f"b2_{level}")(F.max_pool2d(x, 2))
        x = self.get_submodule("b2_plus_1")(x)
        for level in range(1, self.depth + 1):  # up
            x = self.get_submodule(f"b3_{level}")(x)
            x = skips.pop() + F.interpolate(x, scale_factor=2, mode="nearest")
        return x


class EmoNet(nn.Module):
    """EmoNet with a 2-stack FAN backbone and the attention emotion head.

    ``forward(images)`` takes ``[B, 3, 256, 256]`` RGB in [0, 1] and returns a dict with
    ``expression`` (logits ``[B, n_expression]``), ``valence`` and ``arousal`` (``[B]``, trained in
    [-1, 1], not clamped) and ``heatmap`` (``[B, 68, 64, 64]``).
    """

    def __init__(self, n_expression: int = 8, n_stacks: int = 2, n_blocks: int = 4, features: int = 256):
        super().__init__()
        self.n_expression = n_expression
        self.n_stacks = n_stacks
        # FAN stem: 256 -> 128 (stride-2 conv) -> 64 (max-pool after conv2).
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, features)
        for i in range(n_stacks):
            self.add_module(f"m{i}", HourGlass(4, features))
            self.add_module(f"top_m_{i}", ConvBlock(features, features))
            self.add_module(f"conv_last{i}", nn.Conv2d(features, features, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(features))
            self.add_module(f"l{i}", nn.Conv2d(features, N_LANDMARKS, 1))
            if i < n_stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(features, features, 1))
                self.add_module(f"al{i}", nn.Conv2d(N_LANDMARKS, features, 1))
        # Emotion head.
        self.conv1x1_input_emo_2 = nn.Conv2d(features * (n_stacks + 1), features, 1)
        head: list[nn.Module] = []
        for _ in range(n_blocks):
            head += [ConvBlock(features, features), nn.MaxPool2d(2, 2)]
        self.emo_net_2 = nn.Sequential(*head)
        self.emo_fc_2 = nn.Sequential(
            nn.Linear(features, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, n_expression + 2)
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1:] != (3, EMONET_INPUT_SIZE, EMONET_INPUT_SIZE):
            raise ValueError(f"EmoNet expects [B, 3, 256, 256] RGB in [0, 1], got {tuple(images.shape)}")
        x = F.relu(self.bn1(self.conv1(images)))
        x = F.max_pool2d(self.conv2(x), 2)
        x = self.conv4(self.conv3(x))

        previous, stack_features, heatmap = x, [], None
        for i in range(self.n_stacks):
            features = self.get_submodule(f"top_m_{i}")(self.get_submodule(f"m{i}")(previous))
            features = F.relu(self.get_submodule(f"bn_end{i}")(self.get_submodule(f"conv_last{i}")(features)))
            heatmap = self.get_submodule(f"l{i}")(features)
            if i < self.n_stacks - 1:
                features = self.get_submodule(f"bl{i}")(features)
                previous = previous + features + self.get_submodule(f"al{i}")(heatmap)
            stack_features.append(features)

        # Landmark attention: every stack's features weighted by the summed final heatmaps.
        attention = heatmap.sum(dim=1, keepdim=True)
        emotion_features = torch.cat((x, torch.cat(stack_features, dim=1) * attention), dim=1)
        out = self.emo_net_2(self.conv1x1_input_emo_2(emotion_features))
        out = self.emo_fc_2(out.mean(dim=(2, 3)))  # the 4x4 average pool, flattened
        return {
            "expression": out[:, : self.n_expression],
            "valence": out[:, -2],
            "arousal": out[:, -1],
            "heatmap": heatmap,
        }


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DataParallel's ``module.`` prefix, as the published demo does."""
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def load_emonet_state(model: EmoNet, state: dict[str, torch.Tensor], source: str = "checkpoint") -> EmoNet:
    """Copy a published-layout state_dict into ``model``, with errors that say what is wrong.

    Missing ``num_batches_tracked`` counters are fine (they do not affect evaluation); any other missing
    key or a shape mismatch raises ``ValueError``; unexpected extra keys only warn.
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source} is not a state_dict of tensors (got {type(state).__name__})")
    state = _strip_prefix(state)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(
            f"{source} is not a complete EmoNet (n_expression={model.n_expression}) checkpoint: {len(missing)} of "
            f"{len(expected)} entries are missing, e.g. {missing[:5]}. Re-download emonet_{model.n_expression}.pth "
            f"(`python -m etlib.weights --fetch emonet_{model.n_expression}`)."
        )
    wrong = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong:
        raise ValueError(f"{source}: shapes differ from EmoNet's (key, file, expected): {wrong[:5]}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        warnings.warn(f"{source}: ignoring {len(unexpected)} unexpected entries, e.g. {unexpected[:5]}", stacklevel=2)
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return model


def load_emonet(path: str | Path | None = None, n_expression: int = 8) -> EmoNet:
    """EmoNet with the published weights, in eval mode, parameters frozen.

    Args:
        path: a ``.pth`` state_dict; ``None`` takes ``etlib.weights.ensure("emonet_8")``.
        n_expression: 8 (``emonet_8.pth``) or 5.

    Raises:
        WeightsMissingError: ``path`` is None and the registry has no emonet_8 file.
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is unreadable, truncated, or not an EmoNet checkpoint.
    """
    if path is None:
        from etlib.weights import ensure

        path = ensure(f"emonet_{n_expression}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no EmoNet checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or truncated files
        raise ValueError(
            f"cannot read EmoNet checkpoint {path}: {err}. The file may be truncated; re-download it."
        ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    model = load_emonet_state(EmoNet(n_expression=n_expression), state, source=str(path))
    model.eval()
    model.requires_grad_(False)
    return model
