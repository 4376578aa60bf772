"""SyncNet v2 (Chung & Zisserman [14]) as ``syncnet_python`` ships it: the paper's Sync-E/Sync-C judge.

Same modules and state-dict keys as ``SyncNetModel.py``'s ``S`` so ``syncnet_v2.model`` loads as is
(:func:`load_syncnet_v2`, through ``etlib.weights.ensure("syncnet_v2")``). The lip stream takes five
224 x 224 BGR face crops with values 0-255, ``(N, 3, 5, 224, 224)``; the audio stream a ``13 x 20``
MFCC window (:func:`etlib.audio.features.syncnet_mfcc`, 4 MFCC frames per video frame). Embeddings
are 1024-d and not normalised. Scores: :func:`etlib.audio.sync_metrics.sync_scores_v2`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


def _conv_bn_relu(conv: nn.Module, bn: nn.Module) -> list[nn.Module]:
    return [conv, bn, nn.ReLU(inplace=True)]


class SyncNetV2(nn.Module):
    """``syncnet_python``'s ``S`` (``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip``)."""

    def __init__(self, embed_dim: int = 1024, name: str = "syncnet_v2"):
        super().__init__()
        self.name = name
        self.netcnnaud = nn.Sequential(
            *_conv_bn_relu(nn.Conv2d(1, 64, 3, 1, 1), nn.BatchNorm2d(64)),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            *_conv_bn_relu(nn.Conv2d(64, 192, 3, 1, 1), nn.BatchNorm2d(192)),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            *_conv_bn_relu(nn.Conv2d(192, 384, 3, padding=1), nn.BatchNorm2d(384)),
            *_conv_bn_relu(nn.Conv2d(384, 256, 3, padding=1), nn.BatchNorm2d(256)),
            *_conv_bn_relu(nn.Conv2d(256, 256, 3, padding=1), nn.BatchNorm2d(256)),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            *_conv_bn_relu(nn.Conv2d(256, 512, (5, 4), padding=0), nn.BatchNorm2d(512)),
        )
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))
        self.netcnnlip = nn.Sequential(
            *_conv_bn_relu(nn.Conv3d(3, 96, (5, 7, 7), (1, 2, 2), 0), nn.BatchNorm3d(96)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu(nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(256)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256)),
            *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256)),
            *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu(nn.Conv3d(256, 512, (1, 6, 6), padding=0), nn.BatchNorm3d(512)),
        )

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """``(N, 1, 13, 20)`` MFCC windows -> ``(N, 1024)`` (``forward_aud``)."""
        if mfcc.ndim != 4 or tuple(mfcc.shape[1:]) != (1, 13, 20):
            raise ValueError(f"MFCC windows must be (N, 1, 13, 20), got {tuple(mfcc.shape)}")
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def embed_faces(self, faces: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 5, 224, 224)`` BGR face crops, 0-255 -> ``(N, 1024)`` (``forward_lip``)."""
        if faces.ndim != 5 or tuple(faces.shape[1:]) != (3, 5, 224, 224):
            raise ValueError(f"face windows must be (N, 3, 5, 224, 224), got {tuple(faces.shape)}")
        return self.netfclip(self.netcnnlip(faces).flatten(1))


def load_syncnet_v2_file(path: str | os.PathLike, device: str | torch.device = "cpu") -> SyncNetV2:
    """Load ``syncnet_v2.model`` (a state dict of ``S``) in evaluation mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SyncNet v2 weights not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("cpu"):  # built where its weights were loaded, then moved
        model = SyncNetV2()
    # The 2017 release predates BatchNorm's num_batches_tracked; every other tensor must be there.
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path} is not a SyncNet v2 state dict: missing {missing[:4]}, unexpected {unexpected[:4]}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)


def load_syncnet_v2(device: str | torch.device = "cpu") -> SyncNetV2:
    """The pretrained evaluator through the weights registry (``WeightsMissingError`` when absent)."""
    from etlib.weights import ensure

    return load_syncnet_v2_file(ensure("syncnet_v2"), device=device)
