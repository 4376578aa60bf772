"""The processed-subject folder: its layout, its ``meta.json``, and reading it back.

Layout (TalkingGaussian/ER-NeRF's preprocessing is the reference)::

    frames/NNNNNN.jpg          frames at the preset's resolution, 25 fps, face-centred square crop
    masks/{face,mouth,teeth,head,torso,background}/NNNNNN.png
    bg/NNNNNN.jpg              the frame with the head inpainted: C_background of Eq. S9 for that frame
    normals/NNNNNN.png         camera-space normal maps, (n + 1) / 2 * 255
    background.png             a static plate (median of bg/)
    landmarks.npy              (T, 68, 2) float32, pixels of frames/
    transforms.json            intrinsics + a camera-to-world matrix a frame (ER-NeRF format, OpenGL axes)
    audio.wav                  16 kHz mono
    audio_features.npy         (T, D) per-frame audio features
    au.csv                     action-unit intensities, OpenFace column names (AU01_r ...)
    va.npy                     (T, 2) valence, arousal
    split.json                 train / test frame indices (10:1, the last eleventh for test)
    meta.json                  source, crop, fps, backend and version of every step
    report.json                self-checks, and errors against ground truth when it exists

Every step writes atomically and is recorded in ``meta.json`` only once complete, so an interrupted
run resumes from the first step that is not recorded.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from etlib.base import atomic_write_text, json_default

MASK_NAMES = ("face", "mouth", "teeth", "head", "torso", "background")


def frame_name(index: int, ext: str) -> str:
    return f"{index:06d}.{ext}"


class SubjectDir:
    """Paths of a processed subject and its ``meta.json``."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # --- paths -----------------------------------------------------------------------------
    frames = property(lambda self: self.root / "frames")
    masks = property(lambda self: self.root / "masks")
    bg = property(lambda self: self.root / "bg")
    normals = property(lambda self: self.root / "normals")
    background = property(lambda self: self.root / "background.png")
    landmarks = property(lambda self: self.root / "landmarks.npy")
    transforms = property(lambda self: self.root / "transforms.json")
    audio = property(lambda self: self.root / "audio.wav")
    audio_features = property(lambda self: self.root / "audio_features.npy")
    au = property(lambda self: self.root / "au.csv")
    va = property(lambda self: self.root / "va.npy")
    split = property(lambda self: self.root / "split.json")
    meta_path = property(lambda self: self.root / "meta.json")
    report = property(lambda self: self.root / "report.json")

    def mask_dir(self, name: str) -> Path:
        if name not in MASK_NAMES:
            raise ValueError(f"unknown mask {name!r}; masks are {MASK_NAMES}")
        return self.masks / name

    # --- meta ------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text()) if self.meta_path.exists() else {}

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        meta = self.meta()
        meta.update(fields)
        atomic_write_text(self.meta_path, json.dumps(meta, indent=2, default=json_default))
        return meta

    def require_processed(self, steps: tuple[str, ...] | list[str]) -> dict[str, Any]:
        """This subject's ``meta.json`` when the folder exists and ``steps`` are done; otherwise a
        FileNotFoundError that names the folder, what is missing and the command that makes it."""
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"no subject folder at {self.root}: make one with `python -m etlib.preprocess VIDEO {self.root}`"
            )
        meta = self.meta()
        missing = [step for step in steps if step not in meta.get("steps", {})]
        if missing:
            raise FileNotFoundError(
                f"{self.root} is not fully preprocessed (missing steps: {', '.join(missing)}); run "
                f"`python -m etlib.preprocess VIDEO {self.root}` first"
            )
        return meta

    def step_done(self, step: str) -> bool:
        return step in self.meta().get("steps", {})

    def record_step(self, step: str, **info: Any) -> None:
        meta = self.meta()
        meta.setdefault("steps", {})[step] = info
        atomic_write_text(self.meta_path, json.dumps(meta, indent=2, default=json_default))

    def forget_step(self, step: str) -> None:
        meta = self.meta()
        if meta.get("steps", {}).pop(step, None) is not None:
            atomic_write_text(self.meta_path, json.dumps(meta, indent=2, default=json_default))

    # --- reading back ----------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        n = self.meta().get("n_frames")
        if n is None:
            raise FileNotFoundError(f"{self.root} is not a processed subject (no n_frames in meta.json)")
        return int(n)

    def frame_path(self, i: int) -> Path:
        return self.frames / frame_name(i, "jpg")

    def read_frame(self, i: int) -> np.ndarray:
        import cv2

        img = cv2.imread(str(self.frame_path(i)), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"missing frame {self.frame_path(i)}")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def read_mask(self, name: str, i: int) -> np.ndarray:
        import cv2

        path = self.mask_dir(name) / frame_name(i, "png")
        m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise FileNotFoundError(f"missing mask {path}")
        return m > 127

    def read_bg(self, i: int) -> np.ndarray:
        """Frame ``i``'s C_background (Eq. S9): ``bg/``'s inpainted head inside the head mask, the frame's own
        pixels everywhere else.

        Outside the head no Gaussian draws (Eq. S10 shows the background there), so it must be the frame, bit
        for bit: not a second JPEG generation of it, and not the ring of inpainted colour around the head that
        subjects preprocessed before :func:`etlib.preprocess.masks.inpaint_head` kept the frame there hold in
        ``bg/`` (a seam along the face border of every render)."""
        import cv2

        img = cv2.imread(str(self.bg / frame_name(i, "jpg")), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"missing background frame {self.bg / frame_name(i, 'jpg')}")
        filled = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return np.where(self.read_mask("head", i)[..., None], filled, self.read_frame(i))

    def read_normal(self, i: int) -> np.ndarray:
        """(H, W, 3) float32 camera-space normals; zero where the template does not cover the face."""
        import cv2

        img = cv2.imread(str(self.normals / frame_name(i, "png")), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"missing normal map {self.normals / frame_name(i, 'png')}")
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32)
        n = rgb / 127.5 - 1.0
        n[rgb.sum(-1) == 0] = 0.0
        return n

    def read_au(self) -> tuple[list[str], np.ndarray]:
        with open(self.au) as fh:
            rows = list(csv.reader(fh))
        header = [h.strip() for h in rows[0]]
        cols = [k for k, h in enumerate(header) if h.startswith("AU") and h.endswith("_r")]
        values = np.array([[float(r[k]) for k in cols] for r in rows[1:]], dtype=np.float32)
        return [header[k] for k in cols], values

    def read_split(self) -> dict[str, list[int]]:
        return json.loads(self.split.read_text())

    def cameras(self) -> tuple[np.ndarray, np.ndarray]:
        """(K 3x3, world-to-camera (T, 4, 4)) in the OpenCV convention, from ``transforms.json``."""
        from etlib.preprocess.pose import read_transforms

        return read_transforms(self.transforms)
