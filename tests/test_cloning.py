"""Sec. S4.1: eye/mouth regions from landmarks, cut-and-paste vs Poisson seamless cloning."""

from __future__ import annotations

import numpy as np
import pytest

from etlib.base import LANDMARK_GROUPS
from etlib.emoface.cloning import (
    Rect,
    boundary_energy,
    compose_emotional_face,
    paste_regions,
    rect_masks,
    region_rects,
    seamless_clone_regions,
)

ASTRONAUT_FACE = (179, 83, 266, 170)  # dlib's face box on skimage's astronaut


def face_landmarks(box: tuple[float, float, float, float]) -> np.ndarray:
    """A plausible 68-point face (iBUG order) laid out in ``box``: jaw, brows, nose, eyes, lips."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    t = np.linspace(0, 1, 17)
    jaw = np.stack([x0 + w * t, y0 + h * (0.35 + 0.6 * np.sin(np.pi * t))], 1)
    brow_r = np.stack([x0 + w * np.linspace(0.15, 0.42, 5), y0 + h * np.array([0.28, 0.24, 0.22, 0.23, 0.26])], 1)
    brow_l = np.stack([x0 + w * np.linspace(0.58, 0.85, 5), y0 + h * np.array([0.26, 0.23, 0.22, 0.24, 0.28])], 1)
    bridge = np.stack([np.full(4, x0 + w * 0.5), y0 + h * np.linspace(0.35, 0.6, 4)], 1)
    nostrils = np.stack([x0 + w * np.linspace(0.4, 0.6, 5), np.full(5, y0 + h * 0.65)], 1)

    def ring(cx, cy, rx, ry, n):
        a = np.linspace(0, 2 * np.pi, n + 1)[:-1] + np.pi
        return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)

    eye_r = ring(x0 + 0.3 * w, y0 + 0.37 * h, 0.08 * w, 0.03 * h, 6)
    eye_l = ring(x0 + 0.7 * w, y0 + 0.37 * h, 0.08 * w, 0.03 * h, 6)
    lips_out = ring(x0 + 0.5 * w, y0 + 0.8 * h, 0.18 * w, 0.07 * h, 12)
    lips_in = ring(x0 + 0.5 * w, y0 + 0.8 * h, 0.12 * w, 0.03 * h, 8)
    return np.concatenate([jaw, brow_r, brow_l, bridge, nostrils, eye_r, eye_l, lips_out, lips_in])


@pytest.fixture(scope="module")
def scene():
    """Source frame, a 'generated' image with a colour/brightness shift and a changed expression
    detail inside the mouth region, and the generated image's landmarks."""
    import cv2
    import skimage.data

    source = skimage.data.astronaut()
    shifted = np.clip(source.astype(np.float64) * 0.8 + np.array([40.0, 10.0, -15.0]), 0, 255)
    generated = shifted.astype(np.uint8)
    landmarks = face_landmarks(ASTRONAUT_FACE)
    # An expression detail the composite must carry over: a dark crease through the mouth region.
    cx, cy = landmarks[list(LANDMARK_GROUPS["mouth"])].mean(axis=0).astype(int)
    cv2.line(generated, (cx - 15, cy + 4), (cx + 15, cy - 2), (30, 20, 20), 2)
    return source, generated, landmarks


def test_rectangles_contain_their_landmarks(scene):
    source, _, landmarks = scene
    rects = region_rects(landmarks, source.shape)
    assert set(rects) == {"eye_right", "eye_left", "mouth"}
    groups = {
        "eye_right": LANDMARK_GROUPS["eye_right"] + LANDMARK_GROUPS["brow_right"],
        "eye_left": LANDMARK_GROUPS["eye_left"] + LANDMARK_GROUPS["brow_left"],
        "mouth": LANDMARK_GROUPS["mouth"],
    }
    for name, idx in groups.items():
        x0, y0, x1, y1 = rects[name]
        pts = landmarks[list(idx)]
        assert (pts[:, 0] > x0).all() and (pts[:, 0] < x1 - 1).all(), name
        assert (pts[:, 1] > y0).all() and (pts[:, 1] < y1 - 1).all(), name
    # Without brows the eye rectangles shrink from the top.
    no_brows = region_rects(landmarks, source.shape, include_brows=False)
    assert no_brows["eye_right"].y0 > rects["eye_right"].y0
    assert no_brows["mouth"] == rects["mouth"]


def test_rectangles_keep_an_image_frame():
    # Landmarks reaching past the image: rectangles are clipped, leaving one pixel of frame.
    landmarks = face_landmarks((-10, -10, 70, 70))
    rects = region_rects(landmarks, (64, 64, 3))
    for x0, y0, x1, y1 in rects.values():
        assert 1 <= x0 < x1 <= 63 and 1 <= y0 < y1 <= 63


def test_shapes_dtypes_and_masks(scene):
    source, generated, landmarks = scene
    for method in ("paste", "seamless"):
        out = compose_emotional_face(source, generated, landmarks, method=method)
        assert out.image.shape == source.shape and out.image.dtype == np.uint8
        assert out.mask.shape == source.shape[:2] and out.mask.dtype == bool
        assert out.method == method and set(out.region_masks) == set(out.rects)
        for name, (x0, y0, x1, y1) in out.rects.items():
            assert out.region_masks[name].sum() == (x1 - x0) * (y1 - y0)
        assert np.array_equal(out.mask, np.logical_or.reduce(list(out.region_masks.values())))
        # Only the regions change.
        np.testing.assert_array_equal(out.image[~out.mask], source[~out.mask])
    pasted = compose_emotional_face(source, generated, landmarks, method="paste")
    np.testing.assert_array_equal(pasted.image[pasted.mask], generated[pasted.mask])


def test_seamless_clone_has_lower_boundary_energy_than_paste(scene):
    source, generated, landmarks = scene
    pasted = compose_emotional_face(source, generated, landmarks, method="paste")
    cloned = compose_emotional_face(source, generated, landmarks, method="seamless")
    rects = cloned.rects
    paste_excess = boundary_energy(pasted.image, source, rects)
    clone_excess = boundary_energy(cloned.image, source, rects)
    assert paste_excess > 0.002  # the colour shift leaves a visible seam
    assert clone_excess < 0.2 * paste_excess
    assert boundary_energy(pasted.image, source, rects, mode="ratio") > 1.2
    assert boundary_energy(cloned.image, source, rects, mode="ratio") == pytest.approx(1.0, abs=0.1)


def test_seamless_clone_keeps_the_generated_gradients(scene):
    """Inside a region the clone takes the generated image's gradients (Poisson guidance), so the
    crease that g_LEF drew is there, while the colour shift is not."""
    source, generated, landmarks = scene
    cloned = compose_emotional_face(source, generated, landmarks, method="seamless")
    x0, y0, x1, y1 = cloned.rects["mouth"]
    inner = (slice(y0 + 3, y1 - 3), slice(x0 + 3, x1 - 3))

    def grad_x(image):
        return np.diff(image[inner].astype(np.float64), axis=1)

    to_generated = np.abs(grad_x(cloned.image) - grad_x(generated)).mean()
    to_source = np.abs(grad_x(cloned.image) - grad_x(source)).mean()
    assert to_generated < 0.5 * to_source
    # The colour stays the source's: mean colour inside the region is closer to the source's.
    mean = {
        name: im[inner].reshape(-1, 3).mean(axis=0)
        for name, im in {"clone": cloned.image, "source": source, "generated": generated}.items()
    }
    assert np.abs(mean["clone"] - mean["source"]).sum() < np.abs(mean["clone"] - mean["generated"]).sum()


def test_identity_and_energy_baselines(scene):
    source, _, landmarks = scene
    rects = region_rects(landmarks, source.shape)
    same = seamless_clone_regions(source, source, rects)
    assert np.abs(same.astype(int) - source.astype(int)).max() <= 2
    assert boundary_energy(source, source, rects) == 0.0
    assert boundary_energy(source, source, rects, mode="ratio") == pytest.approx(1.0)
    assert np.array_equal(paste_regions(source, source, rects), source)


def test_boundary_energy_measures_a_known_seam():
    # A flat image with one rectangle raised by 0.5: only the edge-straddling pairs differ, by 0.5 in
    # each of 3 channels; of the 2 * width pairs per edge position one straddles the edge.
    source = np.zeros((40, 40, 3))
    composite = source.copy()
    composite[10:20, 10:30] = 0.5
    energy = boundary_energy(composite, source, [Rect(10, 10, 30, 20)], width=2)
    assert energy == pytest.approx(3 * 0.25 / 4)


def test_errors_name_the_problem(scene):
    source, generated, landmarks = scene
    with pytest.raises(ValueError, match="differ in size"):
        compose_emotional_face(source, generated[:-1], landmarks)
    with pytest.raises(ValueError, match="uint8"):
        compose_emotional_face(source.astype(np.float32) / 255, generated, landmarks)
    with pytest.raises(ValueError, match="68"):
        region_rects(landmarks[:60], source.shape)
    with pytest.raises(ValueError, match="method"):
        compose_emotional_face(source, generated, landmarks, method="blend")
    with pytest.raises(ValueError, match="frame"):
        seamless_clone_regions(source, generated, [Rect(0, 0, 20, 20)])
    with pytest.raises(ValueError, match="outside"):
        rect_masks([Rect(500, 500, 600, 520)], source.shape)
    with pytest.raises(ValueError, match="differ in size"):
        boundary_energy(source, source[1:], [Rect(5, 5, 10, 10)])


def test_face_region_covers_the_face_and_forehead_and_keeps_a_frame(scene):
    from etlib.emoface.cloning import face_region_mask

    source, _, landmarks = scene
    mask = face_region_mask(landmarks, source.shape)
    for x, y in np.round(landmarks).astype(int):  # every landmark, the lips, cheeks and brows included
        assert mask[y, x]
    brow_top = landmarks[17:27, 1].min()
    eye_distance = np.linalg.norm(landmarks[42:48].mean(0) - landmarks[36:42].mean(0))
    cx = int(landmarks[27, 0])
    assert mask[int(brow_top - 0.4 * eye_distance), cx]  # the forehead above the brows
    assert not mask[int(brow_top - 1.0 * eye_distance), cx]  # not the hair far above
    assert not mask[:, : int(landmarks[:, 0].min()) - 10].any()  # not the background beside the face
    # Near the image edge a 1-pixel frame stays free for Poisson cloning.
    edge = face_region_mask(face_landmarks((-10, -10, 70, 70)), (64, 64, 3))
    assert edge.any() and not edge[[0, -1], :].any() and not edge[:, [0, -1]].any()


def test_face_region_composite_keeps_cheek_motion_that_the_rectangles_drop(scene):
    """A change between the eye and mouth rectangles (a cheek crease) survives cloning the face region only."""
    import cv2

    source, _, landmarks = scene
    generated = source.copy()
    cheek = (0.5 * (landmarks[31] + landmarks[2])).astype(int)
    cv2.circle(generated, tuple(int(v) for v in cheek), 4, (20, 20, 20), -1)
    rects = compose_emotional_face(source, generated, landmarks, method="seamless")
    face = compose_emotional_face(source, generated, landmarks, method="seamless", regions="face")
    patch = (slice(cheek[1] - 2, cheek[1] + 3), slice(cheek[0] - 2, cheek[0] + 3))
    assert np.abs(rects.image[patch].astype(int) - source[patch]).mean() < 1.0
    assert np.abs(face.image[patch].astype(int) - source[patch]).mean() > 40
    assert set(face.region_masks) == {"face"} and np.array_equal(face.mask, face.region_masks["face"])
    np.testing.assert_array_equal(face.image[~face.mask], source[~face.mask])
    pasted = compose_emotional_face(source, generated, landmarks, method="paste", regions="face")
    np.testing.assert_array_equal(pasted.image[pasted.mask], generated[pasted.mask])
    with pytest.raises(ValueError, match="regions must be"):
        compose_emotional_face(source, generated, landmarks, regions="cheeks")


def test_targets_clone_the_region_their_generator_asks_for(scene):
    from etlib.emoface.offline import OfflineEmotionGenerator
    from etlib.emoface.targets import ClonedEmotionTargets

    assert ClonedEmotionTargets(OfflineEmotionGenerator()).regions == "face"
    assert "face region" in ClonedEmotionTargets(OfflineEmotionGenerator()).name

    class GanLike:
        name = "a GAN"

    assert ClonedEmotionTargets(GanLike()).regions == "eyes_mouth"  # the paper's rectangles by default
    assert ClonedEmotionTargets(OfflineEmotionGenerator(), regions="eyes_mouth").regions == "eyes_mouth"
