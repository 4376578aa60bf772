"""Does the emotion show? The emotion targets and a trained model's renders at the 12 points of Sec. S6.

The paper's claim is a head whose expression follows continuous valence/arousal (Eq. 5, Sec. S6). This module
measures it on held-out frames of a subject, in four parts that each answer one question:

1. **Targets** (what f_E is taught, Sec. 3.3.1 + S4.1): for each frame and S6 point the emotion-stage target
   (generator + seamless cloning) against the untouched frame: the mean absolute change over the face region
   (0-255 grey levels), and what the emotion judge reads on them (V-SA, A-SA, E-Acc, Eq. S18).
2. **Renders** (what f_E learnt): the model's render at each point against its render at ``e = (0, 0)`` of the
   same frame (same pose, speech and background), the same change measure, and its ratio to the targets'.
3. **Direction**: the landmark motion of brows, lids and lip corners, detected (dlib) on the renders, against the
   same motion detected on the targets; the cosine of the two stacked motion vectors per point. Beside it the
   same cosine against the generator's own landmarks of each target (the motion it made, exactly): where the two
   differ, the detector misread the targets (dlib puts a lowered, furrowed brow under a fringe higher, not lower).
4. **Judge**: the same judge on the renders, read absolutely and relative to the judge's reading of the frame at
   ``e = (0, 0)`` (the model's valence/arousal are relative to the subject's resting face when it was trained on
   the offline generator's targets, ``state["va_origin"]``).

With a relative judge (:class:`etlib.emoface.judge.FacsFERJudge`, ``get_judge("fer+au")``: FER + landmark action
units against a neutral reference of the same person) the ``judge`` blocks are its readings of each target against
its source frame and of each render against the model's render at ``(0, 0)`` of the same frame, with landmarks
detected (dlib) on every image, never the generator's own; the FER-only figures stay beside them
(``judge_fer_only``). The judge never made a training target: it only reads images (which judge,
:func:`etlib.emoface.judge.get_judge`, is named in the report, ``judge`` and ``judge_fer_only``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from etlib.config import S6_POINTS

#: Landmarks whose motion carries an expression outside the lips' opening: brows, upper and lower lids, lip corners.
EXPRESSION_POINTS: tuple[int, ...] = (*range(17, 27), 37, 38, 40, 41, 43, 44, 46, 47, 48, 54)


def held_out_frames(test_ids: list[int], n: int = 3) -> list[int]:
    """``n`` frames spread over the test split (its ends excluded)."""
    if not test_ids:
        raise ValueError("the subject has no test frames: run the preprocessing's split step")
    picks = np.linspace(0, len(test_ids) - 1, n + 2)[1:-1].round().astype(int)
    return [int(test_ids[k]) for k in picks]


def face_change(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference over ``mask`` (``[H, W]`` bool), in grey levels of 0-255, of two ``[H, W, 3]``
    images in the same range (uint8, or floats in [0, 1] which are scaled)."""
    a, b = np.asarray(image, np.float64), np.asarray(reference, np.float64)
    if a.shape != b.shape or a.shape[:2] != mask.shape:
        raise ValueError(f"images {a.shape}, {b.shape} and mask {mask.shape} must match")
    if not mask.any():
        raise ValueError("the face mask is empty")
    scale = 255.0 if image.dtype != np.uint8 else 1.0
    return float(np.abs(a - b).mean(axis=-1)[mask].mean() * scale)


def motion_cosine(moved_a: np.ndarray, rest_a: np.ndarray, moved_b: np.ndarray, rest_b: np.ndarray) -> float:
    """Cosine between the stacked :data:`EXPRESSION_POINTS` motions ``moved_a - rest_a`` and ``moved_b - rest_b``
    (``[68, 2]`` each); NaN when either motion is zero or a landmark is missing."""
    idx = list(EXPRESSION_POINTS)
    u = (np.asarray(moved_a) - np.asarray(rest_a))[idx].ravel()
    v = (np.asarray(moved_b) - np.asarray(rest_b))[idx].ravel()
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if not (np.isfinite(nu) and np.isfinite(nv)) or nu == 0 or nv == 0:
        return float("nan")
    return float(u @ v / (nu * nv))


class FaceDescriptor:
    """dlib's 128-d ResNet face descriptor (the ``face_recognition_models`` wheel; 0.6 is its same-person threshold),
    computed on the face chip that dlib aligns from 68 given landmarks; images are upsampled to ``size`` first so a
    128-px frame's face is not thumbnail-sized."""

    name = "dlib face descriptor (ResNet, 128-d)"
    SAME_PERSON = 0.6

    def __init__(self, size: int = 512):
        import dlib

        from etlib import weights

        self._dlib, self.size = dlib, int(size)
        self._model = dlib.face_recognition_model_v1(str(weights.ensure("dlib_face_recognition_resnet")))

    def __call__(self, image: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        import cv2

        scale = self.size / image.shape[0]
        big = cv2.resize(image, (self.size, round(image.shape[1] * scale)), interpolation=cv2.INTER_CUBIC)
        points = np.asarray(landmarks68, np.float64) * scale
        lo, hi = points.min(axis=0), points.max(axis=0)
        rect = self._dlib.rectangle(*(int(v) for v in (lo[0], lo[1], hi[0], hi[1])))
        shape = self._dlib.full_object_detection(rect, [self._dlib.point(int(x), int(y)) for x, y in points])
        return np.array(self._model.compute_face_descriptor(np.ascontiguousarray(big), shape))

    def distance(self, image_a, landmarks_a, image_b, landmarks_b) -> float:
        return float(np.linalg.norm(self(image_a, landmarks_a) - self(image_b, landmarks_b)))


@dataclass
class VisibilityImages:
    """Everything one measurement looked at: per held-out frame ``f`` and S6 point ``p``."""

    frame_ids: list[int]
    sources: np.ndarray  # [F, H, W, 3] uint8, the real frames
    masks: np.ndarray  # [F, H, W] bool, their face regions
    source_landmarks: np.ndarray  # [F, 68, 2], tracked by the preprocessing
    targets: np.ndarray  # [F, P, H, W, 3] uint8
    target_landmarks: np.ndarray  # [F, P, 68, 2], the generator's
    renders: np.ndarray | None = None  # [F, P, H, W, 3] uint8
    neutral_renders: np.ndarray | None = None  # [F, H, W, 3] uint8, e = (0, 0)


def make_targets(targets, data, frame_ids: list[int], points=S6_POINTS) -> VisibilityImages:
    """The emotion-stage targets (``targets(frame, landmarks, va)``, :mod:`etlib.emoface.targets`) of every frame
    at every point."""
    sources, masks, images, landmarks = [], [], [], []
    for i in frame_ids:
        frame, lm = data.subject.read_frame(i), np.asarray(data.landmarks[i], np.float64)
        sources.append(frame)
        masks.append(data.subject.read_mask("face", i) > 0)
        row = [targets(frame, lm, np.array([v, a], np.float32)) for v, a, _ in points]
        images.append([im for im, _ in row])
        landmarks.append([np.asarray(lm2, np.float64) for _, lm2 in row])
    tracked = np.stack([np.asarray(data.landmarks[i], np.float64) for i in frame_ids])
    return VisibilityImages(
        frame_ids, np.stack(sources), np.stack(masks), tracked, np.array(images), np.array(landmarks)
    )


def add_renders(images: VisibilityImages, model, data, points=S6_POINTS, progress: bool = True) -> VisibilityImages:
    """Render every frame at every point and at ``(0, 0)`` (composite of Eq. S10, the frame's own speech)."""
    from tqdm.auto import tqdm

    from etlib.base import to_uint8
    from etlib.train.run_metrics import render_frame

    renders, neutral = [], []
    for i in tqdm(images.frame_ids, desc="render S6 points", disable=not progress):
        neutral.append(to_uint8(render_frame(model, data, i, data.condition(i, va=np.zeros(2, np.float32)))))
        renders.append(
            [
                to_uint8(render_frame(model, data, i, data.condition(i, va=np.array([v, a], np.float32))))
                for v, a, _ in points
            ]
        )
    images.renders, images.neutral_renders = np.array(renders), np.stack(neutral)
    return images


def judge_block(
    judge, images: np.ndarray, landmarks: np.ndarray, points, reference_va: np.ndarray | None = None
) -> dict:
    """The judge's V-RMSE, A-RMSE, V-SA, A-SA (Eqs. S17-S18) and E-Acc of ``images [F, P, H, W, 3]`` against the
    points; with ``reference_va [F, 2]`` also the sign agreements of the readings relative to it."""
    from etlib.emoface.scoring import emotion_scores, judge_faces

    n_frames, n_points = images.shape[:2]
    judged = judge_faces(judge, list(images.reshape(-1, *images.shape[2:])), list(landmarks.reshape(-1, 68, 2)))
    labels = [p for _ in range(n_frames) for p in points]
    out: dict[str, Any] = {k: round(float(v), 4) for k, v in emotion_scores(judged, labels).items()}
    va = judged.va.cpu().numpy().reshape(n_frames, n_points, 2)
    out["mean_va_per_point"] = va.mean(axis=0).round(3).tolist()
    if reference_va is not None:
        rel = va - np.asarray(reference_va)[:, None, :]
        target = np.array([[v, a] for v, a, _ in points])[None]
        out["V-SA relative"] = round(float(np.mean(np.sign(rel[..., 0]) == np.sign(target[..., 0]))), 4)
        out["A-SA relative"] = round(float(np.mean(np.sign(rel[..., 1]) == np.sign(target[..., 1]))), 4)
    return out


def relative_judge_block(
    judge,
    images: np.ndarray,
    landmarks: np.ndarray,
    crop_landmarks: np.ndarray,
    references: np.ndarray,
    reference_landmarks: np.ndarray,
    reference_crop_landmarks: np.ndarray,
    points,
) -> dict:
    """A relative judge's (:class:`~etlib.emoface.judge.FacsFERJudge`) V-RMSE, A-RMSE (Eq. S17), V-SA, A-SA
    (Eq. S18) and E-Acc of ``images [F, P, H, W, 3]`` read against ``references [F, H, W, 3]`` (the same frame's
    neutral: its source, or the render at (0, 0)). ``landmarks [F, P, 68, 2]`` / ``reference_landmarks [F, 68, 2]``
    are detected ones (NaN where no face was found: that image's AU term is left out); the ``crop_*`` landmarks
    place the crops and must be complete."""
    from etlib.emoface.scoring import emotion_scores, judge_relative

    n_frames, n_points = images.shape[:2]
    rep = [f for f in range(n_frames) for _ in range(n_points)]
    judged = judge_relative(
        judge,
        list(images.reshape(-1, *images.shape[2:])),
        landmarks.reshape(-1, 68, 2),
        [references[f] for f in rep],
        np.asarray(reference_landmarks)[rep],
        crop_landmarks.reshape(-1, 68, 2),
        np.asarray(reference_crop_landmarks)[rep],
    )
    labels = [p for _ in range(n_frames) for p in points]
    out: dict[str, Any] = {k: round(float(v), 4) for k, v in emotion_scores(judged, labels).items()}
    out["mean_va_per_point"] = judged.va.cpu().numpy().reshape(n_frames, n_points, 2).mean(axis=0).round(3).tolist()
    measured = np.isfinite(landmarks.reshape(-1, 68, 2)).all(axis=(1, 2))
    measured &= np.isfinite(np.asarray(reference_landmarks)[rep]).all(axis=(1, 2))
    out["action_units_measured"] = f"{int(measured.sum())} of {len(measured)}"
    return out


def _or(detected: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Detected landmarks where the detector found a face, else the fallback (a crop for the judge needs a box)."""
    return np.where(np.isfinite(detected), detected, fallback)


def measure(
    images: VisibilityImages, judge, detector=None, points=S6_POINTS, identity: FaceDescriptor | None = None
) -> dict[str, Any]:
    """The figures of the module docstring from :func:`make_targets` (+ :func:`add_renders`) images; with an
    ``identity`` descriptor also how far each target's descriptor lies from its source's (the person must stay)."""
    from etlib.emoface.judge import is_relative
    from etlib.emoface.scoring import judge_va
    from etlib.train.run_metrics import detect_landmarks

    relative = is_relative(judge)
    fer_only = judge.fer if relative else judge  # the image judge: FER's (or EmoNet's) absolute readings
    n_frames, n_points = images.targets.shape[:2]
    labels = [f"{label} ({v:+.2f}, {a:+.2f})" for v, a, label in points]
    target_change = np.array(
        [
            [face_change(images.targets[f, p], images.sources[f], images.masks[f]) for p in range(n_points)]
            for f in range(n_frames)
        ]
    )
    source_lm = detect_landmarks(list(images.sources / 255.0), detector)
    source_crop_lm = _or(source_lm, images.source_landmarks)
    source_va = judge_va(fer_only, list(images.sources), list(source_crop_lm))
    target_lm = detect_landmarks(list(images.targets.reshape(-1, *images.targets.shape[2:]) / 255.0), detector)
    target_lm = target_lm.reshape(n_frames, n_points, 68, 2)
    block = judge_block(fer_only, images.targets, images.target_landmarks, points, source_va)
    report: dict[str, Any] = {
        "judge": judge.name,
        "frames": images.frame_ids,
        "points": labels,
        "targets": {
            "face_change_grey_levels": round(float(target_change.mean()), 3),
            "face_change_per_point": target_change.mean(axis=0).round(2).tolist(),
            "judge": block,
            "judge_on_sources": source_va.round(3).tolist(),
        },
    }
    if relative:
        report["judge_fer_only"] = fer_only.name
        report["targets"]["judge_fer_only"] = block
        report["targets"]["judge"] = relative_judge_block(
            judge,
            images.targets,
            target_lm,
            _or(target_lm, images.target_landmarks),
            images.sources,
            source_lm,
            source_crop_lm,
            points,
        )
    if identity is not None:
        source_descriptors = [identity(images.sources[f], images.source_landmarks[f]) for f in range(n_frames)]
        distances = np.array(
            [
                [
                    np.linalg.norm(
                        identity(images.targets[f, p], images.target_landmarks[f, p]) - source_descriptors[f]
                    )
                    for p in range(n_points)
                ]
                for f in range(n_frames)
            ]
        )
        report["targets"]["identity"] = {
            "descriptor": identity.name,
            "distance_mean": round(float(distances.mean()), 4),
            "distance_max": round(float(distances.max()), 4),
            "same_person_threshold": identity.SAME_PERSON,
        }
    if images.renders is None:
        return report
    render_change = np.array(
        [
            [face_change(images.renders[f, p], images.neutral_renders[f], images.masks[f]) for p in range(n_points)]
            for f in range(n_frames)
        ]
    )
    flat = list(images.renders.reshape(-1, *images.renders.shape[2:]) / 255.0)
    render_lm = detect_landmarks(flat, detector).reshape(n_frames, n_points, 68, 2)
    neutral_lm = detect_landmarks(list(images.neutral_renders / 255.0), detector)

    def cosines_against(moved: np.ndarray, rest: np.ndarray) -> np.ndarray:
        """[F, P] cosines of the renders' motion against ``moved [F, P, 68, 2]`` - ``rest [F, 68, 2]``."""
        return np.array(
            [
                [motion_cosine(render_lm[f, p], neutral_lm[f], moved[f, p], rest[f]) for p in range(n_points)]
                for f in range(n_frames)
            ]
        )

    cosines = cosines_against(target_lm, source_lm)
    generator_cosines = cosines_against(images.target_landmarks, images.source_landmarks)
    neutral_crop_lm = _or(neutral_lm, images.source_landmarks)
    neutral_va = judge_va(fer_only, list(images.neutral_renders), list(neutral_crop_lm))
    judged_lm = _or(render_lm, images.target_landmarks)
    block = judge_block(fer_only, images.renders, judged_lm, points, neutral_va)
    report["renders"] = {
        "face_change_grey_levels": round(float(render_change.mean()), 3),
        "face_change_per_point": render_change.mean(axis=0).round(2).tolist(),
        "ratio_to_targets": round(float(render_change.mean() / max(target_change.mean(), 1e-9)), 3),
        "landmark_motion_cosine": _nan_round(np.nanmean(cosines) if np.isfinite(cosines).any() else np.nan),
        "landmark_motion_cosine_per_point": [
            _nan_round(np.nanmean(c) if np.isfinite(c).any() else np.nan) for c in cosines.T
        ],
        "landmark_motion_measured": int(np.isfinite(cosines).sum()),
        "landmark_motion_cosine_vs_generator_landmarks": _nan_round(
            np.nanmean(generator_cosines) if np.isfinite(generator_cosines).any() else np.nan
        ),
        "judge": block,
    }
    if relative:
        report["renders"]["judge_fer_only"] = block
        report["renders"]["judge"] = relative_judge_block(
            judge, images.renders, render_lm, judged_lm, images.neutral_renders, neutral_lm, neutral_crop_lm, points
        )
    return report


def _nan_round(x: float, digits: int = 3) -> float | None:
    """``x`` rounded, or None (JSON's null) when it is NaN: no landmarks were found to measure it."""
    return None if not np.isfinite(x) else round(float(x), digits)


def contact_sheet(images: VisibilityImages, frame: int = 0, points=S6_POINTS, zoom: float = 1.35) -> np.ndarray:
    """One ``uint8`` picture: the frame and its 12 targets on the first row, the render at ``(0, 0)`` and the 12
    renders below (when present), each cropped to the face and labelled."""
    import cv2

    mask = images.masks[frame]
    ys, xs = np.nonzero(mask)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    half = int(zoom * max(ys.max() - ys.min(), xs.max() - xs.min()) / 2)
    height, width = mask.shape

    def crop(im: np.ndarray) -> np.ndarray:
        y0, x0 = int(max(cy - half, 0)), int(max(cx - half, 0))
        tile = im[y0 : min(y0 + 2 * half, height), x0 : min(x0 + 2 * half, width)]
        return cv2.resize(tile, (160, 160), interpolation=cv2.INTER_CUBIC)

    def label(tile: np.ndarray, text: str) -> np.ndarray:
        bar = np.full((18, tile.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        return np.concatenate([tile, bar], axis=0)

    names = ["frame"] + [f"{lab} {v:+.2f},{a:+.2f}" for v, a, lab in points]
    rows = [[images.sources[frame]] + list(images.targets[frame])]
    if images.renders is not None:
        rows.append([images.neutral_renders[frame]] + list(images.renders[frame]))
        names_below = ["render 0,0"] + names[1:]
    out = [np.concatenate([label(crop(im), n) for im, n in zip(rows[0], names)], axis=1)]
    if len(rows) > 1:
        out.append(np.concatenate([label(crop(im), n) for im, n in zip(rows[1], names_below)], axis=1))
    return np.concatenate(out, axis=0)


def measure_model(
    model, data, targets=None, judge=None, n_frames: int = 3, identity: bool = True, progress: bool = True
) -> tuple[dict[str, Any], VisibilityImages]:
    """Targets, renders and every figure on ``n_frames`` held-out frames of ``data`` (a run's
    :class:`~etlib.train.data.SubjectFrames`). Default targets: the emotion stage's
    (:func:`etlib.emoface.targets.make_emotion_targets`); default judge: :func:`etlib.emoface.judge.get_judge`
    ``("reading")`` (EmoNet when its weights are present, else FER + landmark action units), on the model's device."""
    from etlib.emoface.judge import get_judge
    from etlib.emoface.targets import make_emotion_targets

    targets = targets or make_emotion_targets()
    judge = judge or get_judge("reading", device=model.device)
    images = make_targets(targets, data, held_out_frames(data.test_ids, n_frames))
    add_renders(images, model, data, progress=progress)
    report = measure(images, judge, identity=FaceDescriptor() if identity else None)
    report["generator"] = targets.name
    return report, images
