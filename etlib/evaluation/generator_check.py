"""The emotional-face stage checked on a processed subject (Sec. 3.3.1, S4.1, S6).

``python -m etlib.evaluation.generator_check --subject DIR --out OUT [--preset quick|smoke] [--frames N]``

On ``N`` source frames spread over the subject's video (``frames/`` and ``landmarks.npy`` of a processed
subject, at the preset's resolution), for each of the 12 valence/arousal points of S6
(``etlib.config.S6_POINTS``):

1. the generator makes the emotional image (:func:`etlib.emoface.targets.make_emotion_targets` picks it:
   the offline landmark-driven generator; g_LEF does not run on subject frames yet, see there);
2. the emotion judge (:func:`etlib.emoface.judge.get_judge`: EmoNet when its weights are present, else the
   FER port) reads valence/arousal and classes of the untouched source, the generated image and its seamless
   clone; V-RMSE, A-RMSE (Eq. S17), V-SA, A-SA (Eq. S18) and top-3 E-Acc against the target point. A
   diagnostic repeats this with the mouth blurred alike in every image (:func:`blur_mouth`): the generator
   must keep the lips (they follow the audio), and a subject whose mouth shows an emotion of its own (the
   sample subject's grin reads 98 % "happy" to the FER judge) pins the judge's reading whatever the upper
   face does;
3. the lips: dlib's 68 landmarks fitted on source and generated (both upsampled to 256 px, one face box), the
   mean shift of the 20 lip points in pixels at 256 px (what L_ll of Eq. 8 penalises), and the lip-rectangle
   pixel MSE (L_lp);
4. cut-and-paste vs Poisson seamless cloning of the eye and mouth regions (Sec. S4.1, Fig. S4): the seam
   :func:`etlib.emoface.cloning.boundary_energy` of each.

Writes ``OUT/report.json`` (every number, the backends that produced them, the paper's Table 3 "Ours" row
for comparison: those are EmoNet on rendered frames, not on generator images), ``OUT/fig_s4.png`` (source,
generated, paste, clone) and ``OUT/fig2_rows.png`` (one row per S6 point).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etlib.base import add_debug_flag, json_default, run_main
from etlib.config import PRESETS, S6_POINTS, get_preset

#: The paper's Table 3, row "Ours" (EmoNet on the rendered emotion-conditioned clip); E-Acc as a fraction.
PAPER_TABLE3_OURS: dict[str, float] = {"V-RMSE": 0.352, "A-RMSE": 0.383, "V-SA": 0.766, "A-SA": 0.637, "E-Acc": 0.466}
#: Lip shifts are reported in pixels of a face image this size (notebook 03 works at 256 px).
REPORT_SIZE = 256
#: The two emotions of the paper's Fig. S4, as the cloning figure shows them.
FIG_S4_POINTS: tuple[tuple[float, float, str], ...] = ((0.74, 0.31, "Happy"), (-0.31, 0.74, "Angry"))


# ----------------------------------------------------------------------------------------------
# Source frames
# ----------------------------------------------------------------------------------------------


@dataclass
class SourceFrames:
    """Untouched frames of a processed subject: ``images [N, S, S, 3]`` uint8, ``landmarks [N, 68, 2]``
    (x, y) pixels of ``images``, ``indices`` their frame numbers."""

    images: np.ndarray
    landmarks: np.ndarray
    indices: list[int]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])


def load_source_frames(subject: str | Path, n: int) -> SourceFrames:
    """``n`` frames spread evenly over a processed subject (ends excluded), with their landmarks.

    Raises FileNotFoundError naming what is missing when ``subject`` is not a processed subject folder.
    """
    from etlib.preprocess import SubjectDir

    if n < 1:
        raise ValueError(f"--frames must be >= 1, got {n}")
    s = SubjectDir(subject)
    if not s.root.is_dir():
        raise FileNotFoundError(f"subject folder {s.root} does not exist: run `python -m etlib.preprocess VIDEO DIR`")
    missing = [p.name for p in (s.meta_path, s.landmarks, s.frames) if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"{s.root} is not a processed subject (missing {', '.join(missing)}): "
            "run `python -m etlib.preprocess VIDEO DIR` first"
        )
    landmarks = np.load(s.landmarks)
    total = min(s.n_frames, len(landmarks))
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"{s.landmarks} must hold (T, 68, 2) landmarks, got {landmarks.shape}")
    if total < 1:
        raise ValueError(f"{s.root} has no frames")
    picks = np.linspace(0, total - 1, n + 2)[1:-1].round().astype(int) if total > n else np.arange(total)
    indices = [int(i) for i in picks if np.isfinite(landmarks[i]).all()]
    if not indices:
        raise ValueError(f"none of frames {picks.tolist()} of {s.root} has finite landmarks")
    images = np.stack([s.read_frame(i) for i in indices])
    return SourceFrames(images, landmarks[indices].astype(np.float64), indices)


# ----------------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------------


def pick_generator(gain: float | None = None) -> tuple[Any, dict[str, Any]]:
    """The emotional face generator and what the report says about it.

    The generator is :func:`etlib.emoface.targets.make_emotion_targets`'s (the one the emotion stage trains
    on). ``gain`` overrides the offline generator's strength (``None``: its default).
    """
    from etlib.backends import choose
    from etlib.emoface.offline import OfflineEmotionGenerator
    from etlib.emoface.targets import make_emotion_targets

    generator = make_emotion_targets("auto").generator
    if gain is not None and isinstance(generator, OfflineEmotionGenerator):
        generator = OfflineEmotionGenerator(gain, generator.margin, generator.max_grid, generator.lip_falloff)
    choice = choose("face_generator")
    info: dict[str, Any] = {
        "ran": generator.name,
        "gain": getattr(generator, "gain", None),
        "face_generator_backend": choice.implementation,
        "face_generator_reason": choice.reason,
    }
    if isinstance(generator, OfflineEmotionGenerator):
        info["g_lef"] = (
            "not run: g_LEF works on FFHQ-aligned generator crops and etlib has no alignment round trip to subject "
            "frames yet (etlib.emoface.targets.make_emotion_targets)"
            + ("" if choice.accelerated else f"; its weights are also absent ({choice.reason})")
        )
    return generator, info


def lip_landmark_shift(detector, source: np.ndarray, generated: np.ndarray, source_landmarks: np.ndarray) -> dict:
    """What Eq. 8's L_ll and L_lp measure, on one (source, generated) pair of the same size.

    Both images are upsampled to :data:`REPORT_SIZE` (bicubic) and dlib's 68 points are fitted on both inside
    one face box (dlib's detection on the source, else the box of ``source_landmarks``), so only the image
    change moves them. Returns ``lip_px`` and ``upper_px`` (mean shift of the 20 lip points, of brows and eyes)
    in pixels at 256 px, ``lip_opening_px`` (mean change of the inner-lip gaps, the part of the lips the audio
    drives) and ``lip_pixel_mse`` (intensities in [0, 1]) over the lip rectangle M_l.
    """
    import cv2

    from etlib.base import LIP_POINTS
    from etlib.emoface.offline import lip_opening, lip_rect_mask

    upper_points = list(range(17, 27)) + list(range(36, 48))
    scale = REPORT_SIZE / source.shape[1]
    size = (REPORT_SIZE, round(source.shape[0] * scale))
    big_src = cv2.resize(source, size, interpolation=cv2.INTER_CUBIC)
    big_gen = cv2.resize(generated, size, interpolation=cv2.INTER_CUBIC)
    boxes = detector.detect_boxes(big_src)
    if boxes:
        box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    else:  # small faces: the landmarks' extent, brows to chin, is close to dlib's box
        lo, hi = source_landmarks.min(axis=0) * scale, source_landmarks.max(axis=0) * scale
        box = (lo[0], lo[1], hi[0], hi[1])
    fitted_gen, fitted_src = detector.fit(big_gen, box).astype(np.float64), detector.fit(big_src, box)
    shift = np.linalg.norm(fitted_gen - fitted_src, axis=1)
    mask = lip_rect_mask(source_landmarks, source.shape[:2])
    diff = (generated.astype(np.float64) - source.astype(np.float64)) / 255.0
    return {
        "lip_px": float(shift[list(LIP_POINTS)].mean()),
        "lip_opening_px": float(np.abs(lip_opening(fitted_gen) - lip_opening(fitted_src)).mean()),
        "upper_px": float(shift[upper_points].mean()),
        "lip_pixel_mse": float((diff[mask] ** 2).mean()),
        "detected_box": bool(boxes),
    }


# ----------------------------------------------------------------------------------------------
# The evaluation
# ----------------------------------------------------------------------------------------------


def make_rows(generator, frames: SourceFrames, points=S6_POINTS, progress: bool = True) -> list:
    """Every source frame at every point: generated image, cut-and-paste and seamless composites
    (:class:`etlib.emoface.cloning.CloningRow`, point-major: all frames of point 0, then of point 1, ...)."""
    from tqdm.auto import tqdm

    from etlib.emoface.cloning import CloningRow, compose_emotional_face

    rows = []
    pairs = [(p, j) for p in points for j in range(len(frames))]
    for (v, a, label), j in tqdm(pairs, desc="generate + clone", disable=not progress):
        src, lm = frames.images[j], frames.landmarks[j]
        out = generator(src, lm, v, a)
        paste = compose_emotional_face(src, out.image, out.landmarks68, method="paste")
        seamless = compose_emotional_face(src, out.image, out.landmarks68, method="seamless")
        rows.append(CloningRow(v, a, label, src, lm, out, paste, seamless))
    return rows


def blur_mouth(image: np.ndarray, landmarks68: np.ndarray, pad: float = 0.35, sigma_iod: float = 0.24) -> np.ndarray:
    """``image`` with the lip box (grown by ``pad`` of its size) Gaussian-blurred (sigma ``sigma_iod`` inter-ocular
    distances): what a judge sees of the upper face alone. Used on source and generated alike, with the source's
    landmarks (the generator keeps the lips in place), so the mouth tells the judge the same on both."""
    import cv2

    from etlib.base import LIP_POINTS
    from etlib.emoface.offline import face_frame

    lips = np.asarray(landmarks68, np.float64)[list(LIP_POINTS)]
    lo, hi = lips.min(axis=0), lips.max(axis=0)
    grow = pad * (hi - lo)
    height, width = image.shape[:2]
    x0, y0 = np.clip(np.floor(lo - grow).astype(int), 0, [width, height])
    x1, y1 = np.clip(np.ceil(hi + grow).astype(int), 0, [width, height])
    sigma = sigma_iod * face_frame(np.asarray(landmarks68, np.float64))[2]
    out = image.copy()
    out[y0:y1, x0:x1] = cv2.GaussianBlur(image, (0, 0), sigma)[y0:y1, x0:x1]
    return out


def judge_rows(judge, rows: Sequence, batch: int = 32, mouth_blurred: bool = False) -> dict[str, Any]:
    """The judge on the source, generated and seamless images of ``rows``: ``{kind: JudgeOutput}``, each face
    cropped around its own landmarks (:func:`etlib.emoface.scoring.judge_faces`). ``mouth_blurred``: every image
    first goes through :func:`blur_mouth` with its row's source landmarks."""
    import torch

    from etlib.emoface.judge import JudgeOutput
    from etlib.emoface.scoring import judge_faces

    kinds = {
        "source": [(r.source, r.source_landmarks) for r in rows],
        "generated": [(r.generated.image, r.generated.landmarks68) for r in rows],
        "clone": [(r.seamless.image, r.generated.landmarks68) for r in rows],
    }
    if mouth_blurred:
        kinds = {
            k: [(blur_mouth(im, r.source_landmarks), lm) for (im, lm), r in zip(v, rows)] for k, v in kinds.items()
        }
    judged = {}
    for kind, pairs in kinds.items():
        parts = [
            judge_faces(judge, [p[0] for p in pairs[i : i + batch]], [p[1] for p in pairs[i : i + batch]])
            for i in range(0, len(pairs), batch)
        ]
        judged[kind] = JudgeOutput(
            torch.cat([p.valence for p in parts]).cpu(),
            torch.cat([p.arousal for p in parts]).cpu(),
            torch.cat([p.probs for p in parts]).cpu(),
            parts[0].class_names,
            parts[0].judge,
        )
    return judged


def emotion_summary(judged: dict[str, Any], rows: Sequence) -> dict[str, Any]:
    """V-RMSE, A-RMSE, V-SA, A-SA, E-Acc (:func:`etlib.emoface.scoring.emotion_scores`) of every image kind against
    each row's target point, the mean V/A distance to the target, and per-point means."""
    from etlib.emoface.scoring import emotion_scores

    points = [(r.valence, r.arousal, r.label) for r in rows]
    target = np.array([[v, a] for v, a, _ in points])
    out: dict[str, Any] = {}
    for kind, j in judged.items():
        scores = emotion_scores(j, points)
        va = j.va.numpy().astype(np.float64)
        scores["VA-distance"] = float(np.linalg.norm(va - target, axis=1).mean())
        scores["mean_va"] = va.mean(axis=0).tolist()
        out[kind] = scores
    per_point = []
    for v, a, label in dict.fromkeys(points):
        sel = [k for k, p in enumerate(points) if p == (v, a, label)]
        entry: dict[str, Any] = {"target": [v, a], "label": label}
        for kind, j in judged.items():
            va = j.va.numpy()[sel].astype(np.float64)
            entry[kind] = {
                "va": va.mean(axis=0).tolist(),
                "distance": float(np.linalg.norm(va - [v, a], axis=1).mean()),
            }
        per_point.append(entry)
    out["per_point"] = per_point
    return out


def cloning_summary(rows: Sequence) -> dict[str, Any]:
    """Seam energy of paste vs seamless cloning (Sec. S4.1): mean excess and ratio over all rows, and the share
    of rows where cloning's is lower."""
    paste = np.array([[r.energy("paste"), r.energy("paste", "ratio")] for r in rows])
    clone = np.array([[r.energy("seamless"), r.energy("seamless", "ratio")] for r in rows])
    return {
        "paste_excess": float(paste[:, 0].mean()),
        "clone_excess": float(clone[:, 0].mean()),
        "paste_ratio": float(paste[:, 1].mean()),
        "clone_ratio": float(clone[:, 1].mean()),
        "clone_lower_share": float(np.mean(clone[:, 0] < paste[:, 0])),
        "pairs": len(rows),
    }


def lip_summary(rows: Sequence, detector, resolution: int, progress: bool = True) -> dict[str, Any]:
    """:func:`lip_landmark_shift` over the rows (means and max), with the generator's own lip landmark shift
    (its returned landmarks vs the source's, 0 by construction for the offline generator) at 256 px."""
    from tqdm.auto import tqdm

    shifts = [
        lip_landmark_shift(detector, r.source, r.generated.image, r.source_landmarks)
        for r in tqdm(rows, desc="lip landmarks", disable=not progress)
    ]
    from etlib.emoface.offline import lip_opening

    scale = REPORT_SIZE / resolution
    own = [
        float(np.linalg.norm(r.generated.landmarks68[48:68] - r.source_landmarks[48:68], axis=1).mean()) * scale
        for r in rows
    ]
    own_opening = [
        float(np.abs(lip_opening(r.generated.landmarks68) - lip_opening(r.source_landmarks)).mean()) * scale
        for r in rows
    ]
    lip = np.array([s["lip_px"] for s in shifts])
    return {
        "detector": f"{detector.name} ({detector.version}), fitted at {REPORT_SIZE} px in one box per pair",
        "lip_shift_px_at_256": float(lip.mean()),
        "lip_shift_px_at_256_max": float(lip.max()),
        "upper_face_shift_px_at_256": float(np.mean([s["upper_px"] for s in shifts])),
        "lip_pixel_mse": float(np.mean([s["lip_pixel_mse"] for s in shifts])),
        "lip_opening_change_px_at_256": float(np.mean([s["lip_opening_px"] for s in shifts])),
        "generator_lip_landmark_shift_px_at_256": float(np.mean(own)),
        "generator_lip_opening_change_px_at_256": float(np.mean(own_opening)),
        "dlib_detected_share": float(np.mean([s["detected_box"] for s in shifts])),
    }


def evaluate_subject(
    subject: str | Path,
    out: str | Path,
    preset: str = "quick",
    frames: int | None = None,
    judge: str = "auto",
    gain: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate, judge, measure lips and seams at the 12 S6 points on ``frames`` source frames (default: the
    preset's ``generator_check_frames``); write ``OUT/report.json``, ``OUT/fig_s4.png``, ``OUT/fig2_rows.png``."""
    from etlib.backends import torch_threads
    from etlib.emoface.judge import get_judge
    from etlib.preprocess.landmarks import DlibLandmarks

    n = get_preset(preset).generator_check_frames if frames is None else int(frames)
    source = load_source_frames(subject, n)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    generator, generator_info = pick_generator(gain)
    with torch_threads():
        the_judge = get_judge(judge)
        rows = make_rows(generator, source, S6_POINTS, progress)
        judged = judge_rows(the_judge, rows)
        upper_only = emotion_summary(judge_rows(the_judge, rows, mouth_blurred=True), rows)
    emotion = emotion_summary(judged, rows)
    gen, src = emotion["generated"], emotion["source"]
    cloning = cloning_summary(rows)
    lips = lip_summary(rows, DlibLandmarks(), source.resolution, progress)
    report: dict[str, Any] = {
        "subject_dir": str(Path(subject).resolve()),
        "preset": preset,
        "resolution": source.resolution,
        "frames": source.indices,
        "points": [list(p) for p in S6_POINTS],
        "pairs": len(rows),
        "generator": generator_info,
        "judge": the_judge.name,
        "emotion": emotion,
        "emotion_mouth_blurred": {
            **upper_only,
            "note": "diagnostic: the same judge with the mouth blurred alike in every image (blur_mouth); the "
            "generator keeps the lips (they belong to the audio), so this isolates what its expression changes",
        },
        "lips": lips,
        "cloning": cloning,
        "checks": {
            "generated_v_rmse_below_source": gen["V-RMSE"] < src["V-RMSE"],
            "generated_a_rmse_below_source": gen["A-RMSE"] < src["A-RMSE"],
            "generated_closer_to_target": gen["VA-distance"] < src["VA-distance"],
            "generated_closer_to_target_mouth_blurred": upper_only["generated"]["VA-distance"]
            < upper_only["source"]["VA-distance"],
            "clone_energy_below_paste": cloning["clone_excess"] < cloning["paste_excess"],
        },
        "paper_table3_ours": {
            **PAPER_TABLE3_OURS,
            "note": "EmoNet on the paper's rendered emotion-conditioned clip (Table 3), not on generator images; "
            "comparable only in kind, and only when the judge above is EmoNet",
        },
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, default=json_default))
    write_figures(out, generator, source, rows, judged)
    return report


def write_figures(out: Path, generator, source: SourceFrames, rows: Sequence, judged: dict[str, Any]) -> None:
    """``fig_s4.png`` (Fig. S4 on the first source frame at :data:`FIG_S4_POINTS`) and ``fig2_rows.png``
    (Fig. 2: the first source frame at every S6 point, with the judge's V/A). Figures are closed once saved; with
    no display matplotlib draws off-screen by itself, so the backend of a notebook that calls this is left alone."""
    import matplotlib.pyplot as plt

    from etlib.viz.emotion import plot_cloning_rows, plot_s6_rows

    n = len(source)
    s4 = [r for k, r in enumerate(rows) if k % n == 0 and (r.valence, r.arousal, r.label) in FIG_S4_POINTS]
    axes = plot_cloning_rows(s4)
    axes.flat[0].figure.savefig(out / "fig_s4.png", dpi=110)
    plt.close(axes.flat[0].figure)
    first = [k for k in range(len(rows)) if k % n == 0]
    va = {kind: j.va.numpy()[first] for kind, j in judged.items()}
    axes = plot_s6_rows([rows[k] for k in first], va, title=f"{generator.name}\njudge: {judged['source'].judge}")
    axes.flat[0].figure.savefig(out / "fig2_rows.png", dpi=90)
    plt.close(axes.flat[0].figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m etlib.evaluation.generator_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--subject", required=True, help="a processed subject folder (python -m etlib.preprocess)")
    parser.add_argument("--out", required=True, help="output folder: report.json, fig_s4.png, fig2_rows.png")
    parser.add_argument("--preset", default="quick", choices=list(PRESETS))
    parser.add_argument("--frames", type=int, default=None, help="source frames (default: the preset's)")
    parser.add_argument("--judge", default="auto", choices=("auto", "emonet", "fer"))
    parser.add_argument("--gain", type=float, default=None, help="offline generator strength (default: its own)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    report = evaluate_subject(args.subject, args.out, args.preset, args.frames, args.judge, args.gain)
    keys = ("V-RMSE", "A-RMSE", "V-SA", "A-SA", "E-Acc", "VA-distance")
    summary = {
        "generator": report["generator"]["ran"],
        "judge": report["judge"],
        **{kind: {k: round(report["emotion"][kind][k], 4) for k in keys} for kind in ("source", "generated", "clone")},
        "mouth_blurred (diagnostic)": {
            kind: {k: round(report["emotion_mouth_blurred"][kind][k], 4) for k in keys}
            for kind in ("source", "generated")
        },
        "lips": {k: v for k, v in report["lips"].items() if k != "detector"},
        "cloning": report["cloning"],
        "checks": report["checks"],
    }
    print(json.dumps(summary, indent=1, default=json_default))
    print(f"report: {Path(args.out) / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
