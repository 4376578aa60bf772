"""etlib.evaluation.emotion_visibility: how much the emotion targets and a model's renders change the face, and whether the
landmark motion points the same way."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from etlib.evaluation import emotion_visibility as ev


def test_face_change_counts_only_the_face_in_grey_levels():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 30  # inside the mask
    b[3, 3] = 200  # outside: ignored
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    assert ev.face_change(b, a, mask) == pytest.approx(30 / 4)
    assert ev.face_change(b / 255.0, a / 255.0, mask) == pytest.approx(30 / 4)  # floats in [0, 1] are scaled
    with pytest.raises(ValueError, match="empty"):
        ev.face_change(b, a, np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="match"):
        ev.face_change(b[:2], a, mask)


def test_motion_cosine_compares_expression_landmark_motion():
    rest = np.random.default_rng(0).normal(size=(68, 2))
    motion = np.zeros((68, 2))
    motion[list(ev.EXPRESSION_POINTS)] = np.random.default_rng(1).normal(size=(len(ev.EXPRESSION_POINTS), 2))
    assert ev.motion_cosine(rest + motion, rest, rest + 2 * motion, rest) == pytest.approx(1.0)
    assert ev.motion_cosine(rest - motion, rest, rest + motion, rest) == pytest.approx(-1.0)
    lips_only = np.zeros((68, 2))
    lips_only[60:68] = 5.0  # the inner lips (speech) do not count
    assert np.isnan(ev.motion_cosine(rest + lips_only, rest, rest + motion, rest))
    missing = rest.copy()
    missing[20] = np.nan
    assert np.isnan(ev.motion_cosine(missing, rest, rest + motion, rest))


def test_held_out_frames_spread_over_the_test_split():
    assert ev.held_out_frames(list(range(100, 110)), 3) == [102, 104, 107]
    with pytest.raises(ValueError, match="no test frames"):
        ev.held_out_frames([], 3)


def test_targets_and_renders_measured_on_a_smoke_run(smoke_subject, tmp_path):
    """End to end on the smoke subject: targets change the face, an untrained emotion branch changes nothing."""
    from etlib.emoface.judge import get_judge
    from etlib.emoface.targets import make_emotion_targets
    from etlib.train import Trainer

    trainer = Trainer(
        smoke_subject.root, tmp_path / "run", "smoke", progress=False, emotion_targets=make_emotion_targets()
    )
    data = trainer.data
    images = ev.make_targets(make_emotion_targets(), data, ev.held_out_frames(data.test_ids, 1))
    ev.add_renders(images, trainer.model, data, progress=False)
    judge = get_judge("fer")
    report = ev.measure(images, judge)
    assert report["targets"]["face_change_grey_levels"] > 1.0
    assert len(report["targets"]["face_change_per_point"]) == 12
    assert report["renders"]["face_change_grey_levels"] < 0.05  # f_E's output layer starts at zero (Sec. 3.2)
    assert report["judge"].startswith("fer")
    # FER + landmark action units: targets against their sources, renders against the render at (0, 0); FER's
    # figures stay beside them and both judges are named
    both = ev.measure(images, get_judge("fer+au"))
    assert "landmark action units" in both["judge"] and both["judge_fer_only"].startswith("fer")
    for part in ("targets", "renders"):
        assert both[part]["judge_fer_only"] == report[part]["judge"]
        assert set(both[part]["judge"]) >= {"V-RMSE", "A-RMSE", "V-SA", "A-SA", "E-Acc", "action_units_measured"}
    # an untrained emotion branch changes nothing: every render reads close to its neutral render (what is left is
    # dlib's landmark jitter on 64 px renders, measured up to 0.15, against the 0.8 ring of the S6 points)
    assert np.abs(np.asarray(both["renders"]["judge"]["mean_va_per_point"])).max() < 0.25
    sheet = ev.contact_sheet(images)
    assert sheet.dtype == np.uint8 and sheet.shape[1] == 13 * 160 and sheet.shape[0] == 2 * (160 + 18)
    # renders that were the targets themselves: the same change and, detected on the same images, the same motion
    perfect = ev.measure(dataclasses.replace(images, renders=images.targets, neutral_renders=images.sources), judge)
    assert perfect["renders"]["ratio_to_targets"] == pytest.approx(1.0, abs=1e-3)
    assert perfect["renders"]["landmark_motion_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert -1 <= perfect["renders"]["landmark_motion_cosine_vs_generator_landmarks"] <= 1


def test_face_descriptor_tells_people_apart_and_keeps_a_person(smoke_subject):
    """The identity check: a frame against itself is 0, against a shifted copy small, against a flipped face of
    another geometry larger."""
    from etlib.train.data import SubjectFrames

    data = SubjectFrames(smoke_subject.root)
    i = data.train_ids[0]
    frame, lm = data.subject.read_frame(i), np.asarray(data.landmarks[i], np.float64)
    descriptor = ev.FaceDescriptor()
    assert descriptor.distance(frame, lm, frame, lm) == pytest.approx(0.0, abs=1e-6)
    other = np.ascontiguousarray(frame[::-1])  # upside down: no longer a face to the network
    lm_other = lm.copy()
    lm_other[:, 1] = frame.shape[0] - 1 - lm_other[:, 1]
    assert descriptor.distance(frame, lm, other, lm_other) > 0.3
