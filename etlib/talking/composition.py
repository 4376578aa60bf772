"""Compositing the rendered layers into the final frame (Sec. S3, Eqs. S9-S10, Fig. S3).

The inside-mouth Gaussians are rendered over the given background, then the face over that::

    C_mouth-bg = C_inside-mouth * A_inside-mouth + C_background * (1 - A_inside-mouth)   (Eq. S9)
    I_hat      = C_face * A_face + C_mouth-bg * (1 - A_face)                             (Eq. S10)

``C`` are colours and ``A`` accumulated opacities (Eqs. S7-S8) as the rasterizer returns them. Images
are channel-last ``(..., H, W, 3)`` with opacities ``(..., H, W, 1)``, or channel-first
``(..., 3, H, W)`` with ``(..., 1, H, W)``: any shapes that broadcast work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def over(color: torch.Tensor, alpha: torch.Tensor, below: torch.Tensor) -> torch.Tensor:
    """``color * alpha + below * (1 - alpha)``: the blend of Eqs. S9 and S10."""
    try:
        return color * alpha + below * (1 - alpha)
    except RuntimeError as err:
        raise ValueError(
            f"colour {tuple(color.shape)}, opacity {tuple(alpha.shape)} and the layer below "
            f"{tuple(below.shape)} do not broadcast; give opacities one channel, e.g. (H, W, 1)"
        ) from err


def mouth_over_background(
    mouth_color: torch.Tensor, mouth_alpha: torch.Tensor, background: torch.Tensor
) -> torch.Tensor:
    """Eq. S9: ``C_mouth-bg = C_im * A_im + C_bg * (1 - A_im)``."""
    return over(mouth_color, mouth_alpha, background)


@dataclass
class Composite:
    """The final image of Eq. S10 and the intermediate ``C_mouth-bg`` of Eq. S9."""

    image: torch.Tensor
    mouth_background: torch.Tensor


def composite(
    face_color: torch.Tensor,
    face_alpha: torch.Tensor,
    mouth_color: torch.Tensor,
    mouth_alpha: torch.Tensor,
    background: torch.Tensor,
) -> Composite:
    """Eqs. S9-S10: the inside mouth over the background, then the face over both."""
    mouth_bg = mouth_over_background(mouth_color, mouth_alpha, background)
    return Composite(image=over(face_color, face_alpha, mouth_bg), mouth_background=mouth_bg)
