"""Pinhole cameras in the OpenCV convention (x right, y down, z forward).

A :class:`Camera` holds a world-to-camera matrix ``viewmat`` (4x4), intrinsics ``K`` (3x3) and the
image size. This is the layout gsplat expects (``viewmats``, ``Ks``), so both rasterizer backends take
the same cameras.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Camera:
    """A pinhole camera.

    Attributes:
        viewmat: world-to-camera transform ``[R | t]`` (4, 4), OpenCV axes.
        K: intrinsics ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` (3, 3), in pixels; pixel centres lie at
            half-integers (gsplat / 3DGS convention).
        width, height: image size in pixels.
    """

    viewmat: Tensor
    K: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        if not torch.is_tensor(self.viewmat):  # an array becomes a CPU tensor, never one on torch's default device
            self.viewmat = torch.as_tensor(self.viewmat, device="cpu")
        self.K = torch.as_tensor(self.K, dtype=self.viewmat.dtype, device=self.viewmat.device)
        if self.viewmat.shape != (4, 4):
            raise ValueError(f"Camera.viewmat must be a 4x4 world-to-camera matrix, got {tuple(self.viewmat.shape)}")
        if self.K.shape != (3, 3):
            raise ValueError(f"Camera.K must be a 3x3 intrinsics matrix, got {tuple(self.K.shape)}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"Camera size must be positive, got width={self.width}, height={self.height}")
        self.width, self.height = int(self.width), int(self.height)

    # -- constructors ------------------------------------------------------------------------
    @staticmethod
    def from_fov(
        viewmat: Tensor, width: int, height: int, fov_y_deg: float = 30.0, dtype: torch.dtype | None = None
    ) -> Camera:
        """A camera with a centred principal point and square pixels, given its vertical field of view (on the
        viewmat's device; an array gives a CPU camera)."""
        device = viewmat.device if torch.is_tensor(viewmat) else torch.device("cpu")
        viewmat = torch.as_tensor(viewmat, dtype=dtype or torch.get_default_dtype(), device=device)
        f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
        K = torch.tensor(
            [[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=viewmat.dtype, device=device
        )
        return Camera(viewmat, K, width, height)

    @staticmethod
    def look_at(
        eye: Sequence[float],
        target: Sequence[float] = (0.0, 0.0, 0.0),
        up: Sequence[float] = (0.0, -1.0, 0.0),
        *,
        width: int,
        height: int,
        fov_y_deg: float = 30.0,
        dtype: torch.dtype | None = None,
    ) -> Camera:
        """A camera at ``eye`` looking at ``target``; ``up`` is the world direction that appears up in
        the image (OpenCV's image y axis points down, so the default up is world -y). A CPU camera: move it with
        :meth:`to`."""
        dtype = dtype or torch.get_default_dtype()
        f64 = {"dtype": torch.float64, "device": "cpu"}
        eye_t = torch.tensor(eye, **f64)
        forward = torch.tensor(target, **f64) - eye_t
        if forward.norm() == 0:
            raise ValueError("Camera.look_at: eye and target coincide")
        z = forward / forward.norm()
        down = -torch.tensor(up, **f64)
        x = torch.linalg.cross(down, z)  # OpenCV: x = y cross z, with y (image down) ~ -up
        if x.norm() < 1e-9:
            raise ValueError("Camera.look_at: `up` is parallel to the viewing direction; pick another up vector")
        x = x / x.norm()
        y = torch.linalg.cross(z, x)
        R = torch.stack([x, y, z])  # rows: camera axes in world coordinates
        viewmat = torch.eye(4, **f64)
        viewmat[:3, :3] = R
        viewmat[:3, 3] = -R @ eye_t
        return Camera.from_fov(viewmat.to(dtype), width, height, fov_y_deg, dtype)

    # -- helpers -----------------------------------------------------------------------------
    @property
    def campos(self) -> Tensor:
        """Camera centre in world coordinates (3,)."""
        R, t = self.viewmat[:3, :3], self.viewmat[:3, 3]
        return -R.transpose(0, 1) @ t

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Camera:
        return Camera(self.viewmat.to(device=device, dtype=dtype), self.K.to(device=device, dtype=dtype),
                      self.width, self.height)  # fmt: skip

    def scaled(self, factor: float) -> Camera:
        """The same camera for an image resized by ``factor`` (e.g. 0.5 for half resolution)."""
        K = self.K.clone()
        K[:2] = K[:2] * factor
        return Camera(self.viewmat, K, round(self.width * factor), round(self.height * factor))

    def crop(self, x0: int, y0: int, width: int, height: int) -> Camera:
        """The camera of the window ``[x0, x0 + width) x [y0, y0 + height)`` of this camera's image.

        Rendering the window gives exactly those pixels of the full render at a fraction of its cost
        (the principal point moves, nothing else does).
        """
        x0, y0, width, height = int(x0), int(y0), int(width), int(height)
        if x0 < 0 or y0 < 0 or width <= 0 or height <= 0 or x0 + width > self.width or y0 + height > self.height:
            raise ValueError(
                f"crop window x0={x0}, y0={y0}, {width}x{height} does not fit a {self.width}x{self.height} image"
            )
        K = self.K.clone()
        K[0, 2] -= x0
        K[1, 2] -= y0
        return Camera(self.viewmat, K, width, height)


def stack_cameras(cameras: Camera | Sequence[Camera]) -> tuple[Tensor, Tensor, int, int, bool]:
    """``(viewmats (C,4,4), Ks (C,3,3), width, height, batched)`` for one camera or a list of them.

    All cameras of one call must share the image size (one output tensor).
    """
    if isinstance(cameras, Camera):
        return cameras.viewmat[None], cameras.K[None], cameras.width, cameras.height, False
    cameras = list(cameras)
    if not cameras or not all(isinstance(c, Camera) for c in cameras):
        raise ValueError("cameras must be a Camera or a non-empty sequence of Camera objects")
    sizes = {(c.width, c.height) for c in cameras}
    if len(sizes) != 1:
        raise ValueError(f"all cameras of one rasterize() call must share width/height, got {sorted(sizes)}")
    width, height = sizes.pop()
    viewmats = torch.stack([c.viewmat for c in cameras])
    Ks = torch.stack([c.K.to(viewmats) for c in cameras])
    return viewmats, Ks, width, height, True
