"""BiSeNet face parsing [68]: the paper's coarse face / mouth mask (Sec. S4.2, Fig. S5).

The network of ``zllrunning/face-parsing.PyTorch`` (used by AD-NeRF, ER-NeRF and TalkingGaussian), written
here so that its published checkpoint ``79999_iter.pth`` (registry name ``bisenet_face_parsing``) loads
with ``strict=True``: module names and shapes reproduce its state-dict layout.

* Context path: a ResNet-18 gives 1/8, 1/16 and 1/32 features; attention refinement modules (ARM) re-weight
  the 1/16 and 1/32 features by their global average, a global-context vector is added at 1/32, and the
  sum is upsampled step by step to 1/8.
* Spatial path: the published model replaces BiSeNet's three-conv spatial path by the ResNet's own 1/8
  feature (same size, already computed), so the checkpoint has no ``sp.*`` weights and neither does this.
* Feature fusion: concatenate spatial and context features, a 1x1 conv block, then channel attention
  ``f + f * sigmoid(W2 relu(W1 avgpool(f)))``.
* Heads: 19 CelebAMask-HQ classes at 1/8, bilinearly upsampled to the input; two auxiliary heads on the
  context features were used for training only but are in the checkpoint.

Input: RGB 512x512, ImageNet-normalised. :class:`BiSeNetMasks` turns the labels into the mask set of the
landmark-polygon backend (:mod:`etlib.preprocess.masks`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from etlib import weights

N_CLASSES = 19
INPUT_SIZE = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: CelebAMask-HQ labels in face-parsing.PyTorch's order (index = class id).
CLASS_NAMES = (
    "background",
    "skin",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "eye_glasses",
    "l_ear",
    "r_ear",
    "earring",
    "nose",
    "mouth",  # the inside of the mouth, between the lips: teeth, tongue, throat
    "u_lip",
    "l_lip",
    "neck",
    "necklace",
    "cloth",
    "hair",
    "hat",
)

#: Which classes make each mask. "face" is what the face branch draws (ears and lips included: they move
#: with the head); "mouth" is the inside-mouth region of Fig. S5; hair, neck and cloth are "torso".
MASK_CLASSES: dict[str, tuple[int, ...]] = {
    "face": (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13),
    "mouth": (11,),
    "hair": (17, 18),
    "neck": (14, 15),
    "cloth": (16,),
    "background": (0,),
}


class ConvBNReLU(nn.Module):
    """conv (no bias) -> batch norm -> ReLU; state-dict keys ``conv.*``, ``bn.*``."""

    def __init__(self, c_in: int, c_out: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 conv + BN ``downsample`` shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if c_in != c_out or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


def _stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1))


class ResNet18(nn.Module):
    """ResNet-18 trunk without the classifier; returns the 1/8, 1/16 and 1/32 features (128, 256, 512 ch)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _stage(64, 64, 1)
        self.layer2 = _stage(64, 128, 2)
        self.layer3 = _stage(128, 256, 2)
        self.layer4 = _stage(256, 512, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinement(nn.Module):
    """ARM: ``f * sigmoid(BN(W avgpool(f)))`` with ``f = ConvBNReLU(x)``."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = ConvBNReLU(c_in, c_out)
        self.conv_atten = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feat, 1))))
        return feat * atten


class ContextPath(nn.Module):
    """ResNet-18 + ARMs + global context, upsampled to 1/8 (returns res-1/8, context-1/8, context-1/16)."""

    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        context = self.conv_avg(F.adaptive_avg_pool2d(feat32, 1))  # global context, broadcast below
        up32 = self.arm32(feat32) + F.interpolate(context, feat32.shape[2:], mode="nearest")
        up32 = self.conv_head32(F.interpolate(up32, feat16.shape[2:], mode="nearest"))
        up16 = self.arm16(feat16) + up32
        up16 = self.conv_head16(F.interpolate(up16, feat8.shape[2:], mode="nearest"))
        return feat8, up16, up32


class FeatureFusion(nn.Module):
    """FFM: fuse spatial and context features, then channel attention ``f + f * a``."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.convblk = ConvBNReLU(c_in, c_out, ks=1, padding=0)
        self.conv1 = nn.Conv2d(c_out, c_out // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(c_out // 4, c_out, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(feat, 1)))))
        return feat + feat * atten


class SegmentationHead(nn.Module):
    """ConvBNReLU then a 1x1 classifier (keys ``conv.*``, ``conv_out.weight``)."""

    def __init__(self, c_in: int, c_mid: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(c_in, c_mid)
        self.conv_out = nn.Conv2d(c_mid, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """BiSeNet face parser; ``forward`` returns the main logits and the two auxiliary ones, input-sized."""

    def __init__(self, n_classes: int = N_CLASSES):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = SegmentationHead(256, 256, n_classes)
        self.conv_out16 = SegmentationHead(128, 64, n_classes)
        self.conv_out32 = SegmentationHead(128, 64, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = x.shape[2:]
        res8, context8, context16 = self.cp(x)
        fused = self.ffm(res8, context8)  # the ResNet's 1/8 feature stands in for the spatial path
        outs = (self.conv_out(fused), self.conv_out16(context8), self.conv_out32(context16))
        return tuple(F.interpolate(o, size, mode="bilinear", align_corners=True) for o in outs)


def load_bisenet(path: str | Path | None = None, device: str | torch.device = "cpu") -> BiSeNet:
    """BiSeNet with the published weights (``weights.ensure("bisenet_face_parsing")`` unless ``path``), in eval mode.

    Raises:
        WeightsMissingError: no ``path`` and the checkpoint is not in the etlib cache.
        ValueError: the file's state dict does not have the face-parsing.PyTorch layout.
    """
    path = Path(path) if path is not None else weights.ensure("bisenet_face_parsing")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
    n_classes = state["conv_out.conv_out.weight"].shape[0] if "conv_out.conv_out.weight" in state else N_CLASSES
    net = BiSeNet(n_classes)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # absent from pre-0.4.1 saves
    if missing or unexpected:
        raise ValueError(
            f"{path} is not a face-parsing.PyTorch BiSeNet checkpoint: missing keys {missing[:5]}, "
            f"unexpected keys {unexpected[:5]}. Expected 79999_iter.pth (registry name bisenet_face_parsing)."
        )
    return net.to(device).eval()


@torch.no_grad()
def parse_face(net: BiSeNet, image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Per-pixel class ids (uint8, image size) of an RGB uint8 image.

    The image is resized to ``size`` (the network's training resolution), normalised with ImageNet
    statistics, parsed, and the labels are resized back with nearest-neighbour sampling.
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    device = next(net.parameters()).device
    x = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    logits = net(torch.from_numpy(x).permute(2, 0, 1)[None].to(device))[0]
    labels = logits[0].argmax(0).to(torch.uint8).cpu().numpy()
    return cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)


def masks_from_labels(labels: np.ndarray, image: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The landmark backend's mask set from class ids (Sec. S4.2).

    Returns booleans ``face``, ``mouth`` (inside of the mouth, teeth included), ``teeth`` (bright, grey
    pixels of the mouth: CelebAMask-HQ has no teeth class; empty without ``image``), ``head`` = face | mouth,
    ``hair``, ``neck``, ``torso`` (hair, neck, clothes: the person outside the head) and ``background``.
    """
    from etlib.preprocess.teeth import teeth_from_colour

    out = {name: np.isin(labels, ids) for name, ids in MASK_CLASSES.items()}
    out["teeth"] = teeth_from_colour(image, out["mouth"]) if image is not None else np.zeros_like(out["mouth"])
    out["head"] = out["face"] | out["mouth"]
    out["torso"] = out.pop("cloth") | out["hair"] | out["neck"]
    return out


class BiSeNetMasks:
    """Face-parsing mask backend: the same masks as the landmark polygons, from BiSeNet's labels.

    Args:
        path: checkpoint file; default: the registry's ``bisenet_face_parsing``.
        device: torch device to run on.
    """

    name = "BiSeNet face parsing (CelebAMask-HQ) + colour teeth segmentation"

    def __init__(self, path: str | Path | None = None, device: str = "cpu"):
        self.net = load_bisenet(path, device)
        self.version = "face-parsing.PyTorch 79999_iter layout"

    def __call__(self, image: np.ndarray, landmarks=None, forehead=None) -> dict[str, np.ndarray]:
        """Masks of one RGB frame; ``landmarks``/``forehead`` are accepted for interface parity and unused."""
        return masks_from_labels(parse_face(self.net, image), image)
