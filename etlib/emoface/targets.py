"""The emotion branch's training images (Sec. 3.3.1, S4.1, Fig. S6): a lip-aligned emotional face made on
the fly from a training frame, with its eye and mouth regions seamlessly cloned back onto the real frame.

``make_emotion_targets()`` returns a callable ``(frame, landmarks, va) -> (image, landmarks)`` for the
trainer (``etlib.train.trainer.EmotionTargets``).
"""

from __future__ import annotations

import numpy as np

from etlib.emoface.cloning import compose_emotional_face
from etlib.emoface.offline import OfflineEmotionGenerator


class ClonedEmotionTargets:
    """``generator`` (g_LEF or its offline counterpart) followed by seamless cloning (S4.1).

    Args:
        generator: ``generator(image, landmarks68, valence, arousal)`` returning an object with ``.image``
            and ``.landmarks68`` (:class:`~etlib.emoface.offline.OfflineEmotionGenerator`'s interface).
        method: ``"seamless"`` (the paper) or ``"paste"`` (the cut-and-paste baseline of Fig. S4 c).
    """

    def __init__(self, generator=None, method: str = "seamless", regions: str | None = None) -> None:
        self.generator = generator or OfflineEmotionGenerator()
        self.method = method
        #: What is cloned (:func:`~etlib.emoface.cloning.compose_emotional_face`): the generator's own choice
        #: (``clone_regions``), else the paper's eye and mouth rectangles.
        self.regions = regions or getattr(self.generator, "clone_regions", "eyes_mouth")
        where = "eye and mouth regions" if self.regions == "eyes_mouth" else "face region"
        self.name = f"{self.generator.name} + {method} cloning of the {where}"
        #: Whether ``va`` is relative to the source frame's own expression (see the generator's attribute).
        self.va_relative_to_source = bool(getattr(self.generator, "va_relative_to_source", False))

    def __call__(self, frame: np.ndarray, landmarks: np.ndarray, va: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        generated = self.generator(frame, landmarks, float(va[0]), float(va[1]))
        composite = compose_emotional_face(
            frame, generated.image, generated.landmarks68, method=self.method, regions=self.regions
        )
        return composite.image, np.asarray(generated.landmarks68, dtype=np.float32)


def make_emotion_targets(prefer: str = "auto", method: str = "seamless") -> ClonedEmotionTargets:
    """The emotion-stage target maker: the offline generator (``prefer='offline'`` or ``'auto'``).

    The neural g_LEF (:mod:`etlib.emoface.lef`) works on FFHQ-aligned crops of its generator's size; feeding
    it to training needs that alignment round trip, which etlib does not have yet, so ``'auto'`` uses the
    offline generator even when StyleGAN2/EmoStyle weights are present (notebook 03 shows g_LEF itself).
    """
    if prefer not in ("auto", "offline"):
        raise ValueError(
            f"prefer={prefer!r}: only the offline generator can feed training for now ('auto' or 'offline'); "
            "the neural g_LEF runs on aligned crops in etlib.emoface.lef"
        )
    return ClonedEmotionTargets(OfflineEmotionGenerator(), method)
