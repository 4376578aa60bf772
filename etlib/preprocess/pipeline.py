"""Any talking-head video to a training-ready subject folder (paper Sec. 4.1, S4.2).

    python -m etlib.preprocess VIDEO OUTDIR [--preset quick] [--steps landmarks pose ...]

Steps run in order; each skips itself when ``meta.json`` records it done, writes atomically, and records
its backend and version. Frames are streamed (never all held in memory). A step that fails leaves every
earlier step's output in place, so fixing the input or the environment and re-running resumes there.
"""

from __future__ import annotations

import importlib.metadata
import json
import resource
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from etlib.base import FPS, SAMPLE_RATE, atomic_dir, atomic_save_npy, atomic_write_text
from etlib.config import Preset, get_preset
from etlib.preprocess.subject import SubjectDir, frame_name

STEPS = ("frames", "audio", "landmarks", "pose", "masks", "normals", "aus", "va", "split", "report")
#: Landmarks are found on the crop at this size, whatever the preset's resolution: dlib's detector needs
#: faces of 80 px or more, and the predictor is more precise on larger faces.
ANALYSIS_SIZE = 512


class NoFaceError(ValueError):
    """Some frames have no detectable face."""


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _ranges(indices: Iterable[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    out, run = [], []
    for i in sorted(indices):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def _imwrite(path: Path, rgb_or_gray: np.ndarray, quality: int = 95) -> None:
    import cv2

    img = rgb_or_gray if rgb_or_gray.ndim == 2 else cv2.cvtColor(rgb_or_gray, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix == ".jpg" else []
    if not cv2.imwrite(str(path), img, params):
        raise OSError(f"could not write {path}")


# ------------------------------------------------------------------------------------------------
# Steps
# ------------------------------------------------------------------------------------------------


def check_video(video: Path) -> dict:
    """Validate the input before any work: it exists, is a video, and has sound."""
    from etlib.io import NoAudioStreamError, probe

    video = Path(video)
    if not video.is_file():
        what = "is a folder, not a video" if video.is_dir() else "not found"
        raise FileNotFoundError(f"video {what}: {video} (check the path)")
    info = probe(video)  # raises NotAVideoError with ffmpeg's reason
    if info.video is None:
        from etlib.io import NotAVideoError

        raise NotAVideoError(f"{video} has no video stream (is it an audio file?)")
    if info.audio is None:
        raise NoAudioStreamError(
            f"{video} has no audio track: the talking head is driven by the speech in the video; "
            "give a video with its sound"
        )
    return {
        "source": str(video.resolve()),
        "source_size": [info.video.width, info.video.height],
        "source_fps": round(info.video.fps, 4),
        "source_vfr": bool(info.video.is_vfr),
        "source_duration": round(info.duration, 3),
        "source_audio_rate": info.audio.sample_rate,
        "source_audio_channels": info.audio.channels,
        "retimed_to_25fps": bool(info.video.is_vfr or abs(info.video.fps - FPS) > 0.01),
    }


def step_frames(video: Path, subject: SubjectDir, preset: Preset, progress: bool) -> dict:
    from etlib.preprocess.crop import choose_crop_window, iter_cropped_frames, sample_face_boxes
    from etlib.preprocess.landmarks import DlibLandmarks

    source = check_video(video)
    detector = DlibLandmarks()  # HOG boxes are enough to place the window
    w, h = source["source_size"]
    window = choose_crop_window(sample_face_boxes(video, detector), w, h)
    n = 0
    with atomic_dir(subject.frames) as tmp:
        frames = iter_cropped_frames(video, window, preset.resolution, FPS)
        for frame in tqdm(frames, desc="frames", unit="frame", disable=not progress):
            if preset.max_frames is not None and n >= preset.max_frames:
                break
            _imwrite(tmp / frame_name(n, "jpg"), frame)
            n += 1
    if n == 0:
        raise ValueError(f"no frames decoded from {video}")
    subject.update_meta(**source, crop=window.to_dict(), resolution=preset.resolution, fps=FPS, n_frames=n)
    return {"backend": "ffmpeg (imageio-ffmpeg) + dlib HOG crop", "version": _version("imageio-ffmpeg")}


def step_audio(video: Path, subject: SubjectDir, preset: Preset, progress: bool) -> dict:
    from etlib.audio.features import audio_features
    from etlib.io import read_audio, write_wav

    n = subject.n_frames
    wave = read_audio(video, sr=SAMPLE_RATE)  # any rate, any channel count -> 16 kHz mono
    want = int(round(n * SAMPLE_RATE / FPS))
    wave = np.pad(wave, (0, max(0, want - len(wave))))[:want].astype(np.float32)
    write_wav(subject.audio, wave, SAMPLE_RATE)
    feats, backend = audio_features(wave, SAMPLE_RATE, FPS, n_frames=n)  # HuBERT when present, else log-mel
    atomic_save_npy(subject.audio_features, feats)
    return {"backend": backend, "dim": int(feats.shape[1])}


def step_landmarks(video: Path, subject: SubjectDir, preset: Preset, progress: bool, allow_missing: bool) -> dict:
    from etlib.preprocess.crop import CropWindow, iter_cropped_frames
    from etlib.preprocess.landmarks import get_landmark_detector, smooth_landmarks

    meta = subject.meta()
    window = CropWindow(**meta["crop"])
    n = meta["n_frames"]
    detector = get_landmark_detector()
    scale = meta["resolution"] / ANALYSIS_SIZE
    found = np.full((n, 68, 2), np.nan, np.float32)
    detected = np.zeros(n, bool)
    prev_box = None
    frames = iter_cropped_frames(video, window, ANALYSIS_SIZE, FPS)
    for i, frame in enumerate(tqdm(frames, total=n, desc="landmarks", unit="frame", disable=not progress)):
        if i >= n:
            break
        det = detector(frame, prev_box)
        if det.landmarks is not None:
            found[i] = det.landmarks * scale
            prev_box = det.box
        detected[i] = det.detected
    missing = np.nonzero(np.isnan(found[:, 0, 0]))[0]
    if len(missing) and not allow_missing:
        raise NoFaceError(
            f"no face found in {len(missing)} of {n} frames: {_ranges(missing)}. Cut those frames from the "
            "video, or re-run with --allow-missing-faces to fill them from their neighbours."
        )
    if len(missing) == n:
        raise NoFaceError(f"no face found in any of the {n} frames of {video}")
    if len(missing):
        good = np.nonzero(~np.isnan(found[:, 0, 0]))[0]
        flat = found.reshape(n, -1)
        for k in range(flat.shape[1]):
            flat[missing, k] = np.interp(missing, good, flat[good, k])
    atomic_save_npy(subject.landmarks, smooth_landmarks(found))
    return {
        "backend": detector.name,
        "version": detector.version,
        "face_share": float(1 - len(missing) / n),
        "detected_share": float(detected.mean()),
        "filled_frames": _ranges(missing),
    }


def step_pose(video: Path, subject: SubjectDir, preset: Preset, progress: bool) -> dict:
    from etlib.preprocess.pose import solve_head_pose, write_transforms

    res = subject.meta()["resolution"]
    landmarks = np.load(subject.landmarks)
    pose = solve_head_pose(landmarks, res, res)
    write_transforms(subject.transforms, pose, res, res)
    return {
        "backend": "PnP on the mean 68-landmark face (OpenCV) + focal search + joint smoothing-spline refit",
        "version": _version("opencv-python-headless"),
        "focal_px": float(pose.K[0, 0]),
        "reprojection_iod": float(pose.reprojection_iod.mean()),
        "reprojection_iod_per_frame_pnp": float(pose.per_frame_pnp_reprojection_iod.mean()),
    }


def _head_pose(subject: SubjectDir):
    from etlib.preprocess.pose import HeadPose

    K, w2c = subject.cameras()
    n = len(w2c)
    return HeadPose(K, w2c, np.zeros(n), np.zeros(n))


def step_masks(video: Path, subject: SubjectDir, preset: Preset, progress: bool) -> dict:
    import cv2

    from etlib.preprocess.masks import background_and_torso, get_mask_backend, inpaint_head
    from etlib.preprocess.pose import project_forehead

    n = subject.n_frames
    landmarks = np.load(subject.landmarks)
    forehead = project_forehead(_head_pose(subject))
    names = ("face", "mouth", "teeth", "head")
    parse = get_mask_backend()  # BiSeNet when its weights are cached, else landmark polygons
    with atomic_dir(subject.masks) as mtmp, atomic_dir(subject.bg) as btmp:
        for name in (*names, "background", "torso"):
            (mtmp / name).mkdir()
        plate_samples = []
        stride = max(1, n // 60)
        for i in tqdm(range(n), desc="masks", unit="frame", disable=not progress):
            frame = subject.read_frame(i)
            masks = parse(frame, landmarks[i], forehead[i])
            for name in names:
                cv2.imwrite(str(mtmp / name / frame_name(i, "png")), masks[name].astype(np.uint8) * 255)
            bg = inpaint_head(frame, masks["head"])
            _imwrite(btmp / frame_name(i, "jpg"), bg)
            if i % stride == 0:
                plate_samples.append(bg)
        plate = np.median(np.stack(plate_samples), axis=0).astype(np.uint8)
        _imwrite(subject.root / ".background.png", plate)
        for i in range(n):
            head = cv2.imread(str(mtmp / "head" / frame_name(i, "png")), cv2.IMREAD_GRAYSCALE) > 127
            background, torso = background_and_torso(subject.read_frame(i), head, plate)
            cv2.imwrite(str(mtmp / "background" / frame_name(i, "png")), background.astype(np.uint8) * 255)
            cv2.imwrite(str(mtmp / "torso" / frame_name(i, "png")), torso.astype(np.uint8) * 255)
    (subject.root / ".background.png").replace(subject.background)
    return {"backend": f"{parse.name} + Telea inpainting", "version": f"{parse.version}; opencv {cv2.__version__}"}


def step_normals(video: Path, subject: SubjectDir, preset: Preset, progress: bool) -> dict:
    import cv2

    from etlib.preprocess.normals import encode_normals, render_normal_map
    from etlib.preprocess.pose import project_forehead

    n = subject.n_frames
    res = subject.meta()["resolution"]
    landmarks = np.load(subject.landmarks)
    pose = _head_pose(subject)
    forehead = project_forehead(pose)
    with atomic_dir(subject.normals) as tmp:
        for i in tqdm(range(n), desc="normals", unit="frame", disable=not progress):
            verts = np.concatenate([landmarks[i], forehead[i]], axis=0)
            normal = render_normal_map(verts, pose.w2c[i, :3, :3], res)
            cv2.imwrite(str(tmp / frame_name(i, "png")), cv2.cvtColor(encode_normals(normal), cv2.COLOR_RGB2BGR))
    return {"backend": "template normals fitted to the landmarks", "version": "etlib"}


def step_aus(video: Path, subject: SubjectDir, preset: Preset, progress: bool, au_csv: Path | None) -> dict:
    import shutil

    from etlib.preprocess.action_units import AU_NAMES, au_from_landmarks, read_openface_csv, write_au_csv

    n = subject.n_frames
    if au_csv is not None:
        aus, backend = read_openface_csv(au_csv), f"OpenFace CSV ({au_csv})"
        if len(aus) != n:
            raise ValueError(f"{au_csv} has {len(aus)} rows but the subject has {n} frames at 25 fps")
        aus = np.nan_to_num(aus)
    elif shutil.which("FeatureExtraction"):
        from etlib.preprocess.action_units import run_openface

        aus, backend = np.nan_to_num(run_openface(subject.frames)[:n]), "OpenFace FeatureExtraction"
    else:
        aus, backend = au_from_landmarks(np.load(subject.landmarks)), "AU intensities from landmark geometry"
    write_au_csv(subject.au, aus, AU_NAMES, FPS)
    return {"backend": backend, "aus": list(AU_NAMES)}


def step_va(video: Path, subject: SubjectDir, preset: Preset, progress: bool, batch: int = 32) -> dict:
    import torch

    from etlib.emoface.judge import crop_face, get_judge

    n = subject.n_frames
    landmarks = np.load(subject.landmarks)
    judge = get_judge()
    va = np.zeros((n, 2), np.float32)
    probs = []
    with torch.no_grad():
        for start in tqdm(range(0, n, batch), desc="valence/arousal", unit="batch", disable=not progress):
            idx = range(start, min(n, start + batch))
            crops = np.stack([crop_face(subject.read_frame(i), landmarks[i], size=128) for i in idx])
            images = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
            out = judge(images)
            va[start : start + len(idx), 0] = out.valence.numpy()
            va[start : start + len(idx), 1] = out.arousal.numpy()
            probs.append(out.probs.numpy())
    atomic_save_npy(subject.va, va)
    atomic_save_npy(subject.root / "emotion_probs.npy", np.concatenate(probs).astype(np.float32))
    return {"backend": judge.name, "classes": list(out.class_names)}


def step_split(video: Path, subject: SubjectDir, preset: Preset, progress: bool) -> dict:
    n = subject.n_frames
    n_test = max(1, int(round(n / 11)))  # train:test = 10:1, the last eleventh for test
    split = {"train": list(range(n - n_test)), "test": list(range(n - n_test, n))}
    atomic_write_text(subject.split, json.dumps(split))
    return {"backend": "last eleventh for test", "train": n - n_test, "test": n_test}


def step_report(video: Path, subject: SubjectDir, preset: Preset, progress: bool, ground_truth: Path | None) -> dict:
    from etlib.preprocess.report import build_report

    report = build_report(subject, ground_truth)
    atomic_write_text(subject.report, json.dumps(report, indent=2))
    return {"backend": "etlib.preprocess.report", "ground_truth": str(ground_truth) if ground_truth else None}


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


def find_ground_truth(video: Path) -> Path | None:
    """``<video dir>/ground_truth/<video stem>.npz`` when it exists (the sample subject's layout)."""
    candidate = Path(video).parent / "ground_truth" / f"{Path(video).stem}.npz"
    return candidate if candidate.exists() else None


def preprocess(
    video: str | Path,
    outdir: str | Path,
    preset: str | Preset = "quick",
    steps: Iterable[str] | None = None,
    *,
    ground_truth: str | Path | None = None,
    au_csv: str | Path | None = None,
    allow_missing_faces: bool = False,
    force: bool = False,
    progress: bool = True,
) -> SubjectDir:
    """Run the preprocessing steps on ``video`` into ``outdir`` and return the subject folder.

    Args:
        steps: run only these (default: all); an earlier step that is not done yet is an error naming it.
        ground_truth: an ``.npz`` of true landmarks/poses/blinks (the sample subject's); default: looked up
            beside the video. Used only by the report.
        au_csv: OpenFace output to use for the action units.
        force: re-run the chosen steps even when done.
    """
    preset = get_preset(preset)
    video = Path(video)
    subject = SubjectDir(outdir)
    subject.root.mkdir(parents=True, exist_ok=True)
    meta = subject.meta()
    if meta.get("source") and Path(meta["source"]) != video.resolve():
        raise ValueError(
            f"{subject.root} holds a subject made from {meta['source']}, not {video}; choose another OUTDIR"
        )
    if meta.get("resolution") not in (None, preset.resolution):
        raise ValueError(
            f"{subject.root} was processed at {meta['resolution']} px, the {preset.name} preset wants "
            f"{preset.resolution} px; use another OUTDIR for this preset"
        )
    chosen = list(STEPS) if steps is None else list(steps)
    unknown = [s for s in chosen if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown steps {unknown}; steps are {', '.join(STEPS)}")
    for flag, given in (("--ground-truth", ground_truth), ("--au-csv", au_csv)):
        if given is not None and not Path(given).is_file():  # refused now, not after an hour of steps
            raise FileNotFoundError(f"{flag} {given}: no such file")
    ground_truth = Path(ground_truth) if ground_truth else find_ground_truth(video)
    runners: dict[str, Callable[[], dict]] = {
        "frames": lambda: step_frames(video, subject, preset, progress),
        "audio": lambda: step_audio(video, subject, preset, progress),
        "landmarks": lambda: step_landmarks(video, subject, preset, progress, allow_missing_faces),
        "pose": lambda: step_pose(video, subject, preset, progress),
        "masks": lambda: step_masks(video, subject, preset, progress),
        "normals": lambda: step_normals(video, subject, preset, progress),
        "aus": lambda: step_aus(video, subject, preset, progress, Path(au_csv) if au_csv else None),
        "va": lambda: step_va(video, subject, preset, progress),
        "split": lambda: step_split(video, subject, preset, progress),
        "report": lambda: step_report(video, subject, preset, progress, ground_truth),
    }
    for step in STEPS:
        if step not in chosen:
            if not subject.step_done(step) and any(STEPS.index(c) > STEPS.index(step) for c in chosen):
                raise RuntimeError(f"step {step!r} has not run yet for {subject.root}; run it first (--steps {step})")
            continue
        if subject.step_done(step) and not force:
            continue
        if step == "report":  # time and memory of everything before it
            subject.update_meta(peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        start = time.perf_counter()
        info = runners[step]()
        info["seconds"] = round(time.perf_counter() - start, 2)
        subject.record_step(step, **info)
    return subject
