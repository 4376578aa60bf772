"""Compositing the rendered layers into the final frame (Sec. S3, Eqs. S9-S10, Fig. S3).

The inside-mouth Gaussians are rendered over the given background, then the face over that::

    C_mouth-bg = C_inside-mouth * A_inside-mouth + C_background * (1 - A_inside-mouth)   (Eq. S9)
    I_hat      = C_face * A_face + C_mouth-bg * (1 - A_face)                             (Eq. S10)

Read ``C_layer * A_layer`` as "the layer's colour where it covers the pixel". The rasterizer's colour
(Eq. S7, ``sum_i c_i alpha_i T_i``) is that product already: it is *premultiplied* by the layer's opacity
``A`` (Eq. S8). So a rendered layer goes over what lies below as ``C + below * (1 - A)``, the Porter-Duff
"over" of premultiplied colours. Multiplying the rendered colour by ``A`` once more would darken every
half-covered pixel (``A^2 c`` instead of ``A c``): a dark rim along the jaw, the hairline and the inner lips.
TalkingGaussian's compositing code does the same (a layer rendered over its background, minus that
background's share, plus the layer below times ``1 - A``), and :func:`composite` equals rendering the face
and inside-mouth Gaussians together when the face lies in front (``tests/test_talking_composition.py``).

Colours are channel-last ``(..., H, W, 3)`` with opacities ``(..., H, W, 1)``, or channel-first
``(..., 3, H, W)`` with ``(..., 1, H, W)``: any shapes that broadcast work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def over(color: torch.Tensor, alpha: torch.Tensor, below: torch.Tensor) -> torch.Tensor:
    """``color + below * (1 - alpha)``: a rendered layer (premultiplied ``color``, opacity ``alpha``) over
    ``below``; the blend of Eqs. S9 and S10."""
    try:
        return color + below * (1 - alpha)
    except RuntimeError as err:
        raise ValueError(
            f"colour {tuple(color.shape)}, opacity {tuple(alpha.shape)} and the layer below "
            f"{tuple(below.shape)} do not broadcast; give opacities one channel, e.g. (H, W, 1)"
        ) from err


def mouth_over_background(
    mouth_color: torch.Tensor, mouth_alpha: torch.Tensor, background: torch.Tensor
) -> torch.Tensor:
    """Eq. S9: ``C_mouth-bg``, the rendered inside mouth over the background."""
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
    """Eqs. S9-S10: the inside mouth over the background, then the face over both.

    ``face_color`` and ``mouth_color`` are the rasterizer's colours over black (premultiplied, Eq. S7),
    ``face_alpha`` and ``mouth_alpha`` its accumulated opacities (Eq. S8).
    """
    mouth_bg = mouth_over_background(mouth_color, mouth_alpha, background)
    return Composite(image=over(face_color, face_alpha, mouth_bg), mouth_background=mouth_bg)
