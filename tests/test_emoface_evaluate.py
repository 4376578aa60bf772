"""``python -m etlib.evaluation.generator_check`` on the smoke subject: report, figures, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from etlib.evaluation import generator_check as emo_eval


@pytest.fixture(scope="module")
def smoke_report(smoke_subject, tmp_path_factory):
    out = tmp_path_factory.mktemp("emoface_eval")
    assert (
        emo_eval.main(["--subject", str(smoke_subject.root), "--out", str(out), "--preset", "smoke", "--frames", "1"])
        == 0
    )
    return out, json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_cli_writes_report_and_both_figures(smoke_report):
    out, report = smoke_report
    assert report["pairs"] == 12 and len(report["frames"]) == 1
    assert [tuple(p[:2]) for p in report["points"]] == [(v, a) for v, a, _ in emo_eval.S6_POINTS]
    assert report["generator"]["ran"].startswith("offline")
    assert "fer" in report["judge"] or "emonet" in report["judge"]
    assert report["paper_table3_ours"]["V-SA"] == 0.766 and report["paper_table3_ours"]["A-SA"] == 0.637
    per_point = report["emotion"]["per_point"]
    assert [tuple(p["target"]) for p in per_point] == [(v, a) for v, a, _ in emo_eval.S6_POINTS]
    target = np.array([p["target"] for p in per_point])
    for kind in ("source", "generated", "clone"):
        # one frame: one judged image a point, so the scores follow from the per-point readings (Eqs. S17-S18)
        scores, va = report["emotion"][kind], np.array([p[kind]["va"] for p in per_point])
        assert scores["V-RMSE"] == pytest.approx(np.sqrt(np.mean((va[:, 0] - target[:, 0]) ** 2)))
        assert scores["A-RMSE"] == pytest.approx(np.sqrt(np.mean((va[:, 1] - target[:, 1]) ** 2)))
        assert scores["V-SA"] == pytest.approx(np.mean(np.sign(va[:, 0]) == np.sign(target[:, 0])))
        assert scores["A-SA"] == pytest.approx(np.mean(np.sign(va[:, 1]) == np.sign(target[:, 1])))
        assert scores["VA-distance"] == pytest.approx(np.mean([p[kind]["distance"] for p in per_point]))
        assert scores["E-Acc"] * 12 == pytest.approx(round(scores["E-Acc"] * 12))  # a share of the 12 images
    assert set(report["emotion_mouth_blurred"]) >= {"source", "generated", "clone", "per_point", "note"}
    for name in ("fig_s4.png", "fig2_rows.png"):
        from PIL import Image

        with Image.open(out / name) as im:
            assert im.size[0] > 300 and im.size[1] > 300


def test_checks_agree_with_the_numbers_and_cloning_beats_paste(smoke_report):
    _, report = smoke_report
    gen, src, clone = report["emotion"]["generated"], report["emotion"]["source"], report["cloning"]
    checks = report["checks"]
    assert checks["generated_v_rmse_below_source"] == (gen["V-RMSE"] < src["V-RMSE"])
    assert checks["generated_a_rmse_below_source"] == (gen["A-RMSE"] < src["A-RMSE"])
    assert checks["clone_energy_below_paste"] == (clone["clone_excess"] < clone["paste_excess"])
    # Sec. S4.1: Poisson cloning removes the seams that cut-and-paste leaves.
    assert clone["clone_excess"] < clone["paste_excess"] and clone["clone_ratio"] < clone["paste_ratio"]
    assert clone["paste_ratio"] > 1.05 and abs(clone["clone_ratio"] - 1) < 0.1


def test_the_mouth_keeps_its_opening_while_the_face_moves(smoke_report):
    lips = smoke_report[1]["lips"]
    # the generator keeps the gap between the lips (what the audio drives, Eq. 8's reason) and moves the corners
    assert lips["generator_lip_opening_change_px_at_256"] < 0.2
    assert lips["generator_lip_landmark_shift_px_at_256"] > lips["generator_lip_opening_change_px_at_256"]
    assert lips["lip_opening_change_px_at_256"] < 1.5  # dlib refitted on the images
    assert lips["upper_face_shift_px_at_256"] > lips["lip_opening_change_px_at_256"]


@pytest.mark.slow
def test_gain_zero_changes_nothing(smoke_subject, tmp_path):
    """The generator at strength 0 returns the source: every score of 'generated' equals the source's."""
    report = emo_eval.evaluate_subject(smoke_subject.root, tmp_path, "smoke", frames=1, gain=0.0, progress=False)
    assert report["generator"]["gain"] == 0.0
    for section in ("emotion", "emotion_mouth_blurred"):
        for key in ("V-RMSE", "A-RMSE", "V-SA", "A-SA", "E-Acc"):
            assert report[section]["generated"][key] == pytest.approx(report[section]["source"][key], abs=1e-6)
    assert report["lips"]["lip_shift_px_at_256"] == 0.0 and report["lips"]["upper_face_shift_px_at_256"] == 0.0


def test_lip_landmark_shift_sees_a_moved_mouth(smoke_subject):
    from etlib.preprocess.landmarks import DlibLandmarks

    frames = emo_eval.load_source_frames(smoke_subject.root, 1)
    src, lm = frames.images[0], frames.landmarks[0]
    detector = DlibLandmarks()
    same = emo_eval.lip_landmark_shift(detector, src, src.copy(), lm)
    assert same["lip_px"] == 0.0 and same["lip_pixel_mse"] == 0.0
    moved = src.copy()
    lo, hi = lm[48:68].min(0).astype(int) - 2, lm[48:68].max(0).astype(int) + 3
    moved[lo[1] + 2 : hi[1] + 2, lo[0] : hi[0]] = src[lo[1] : hi[1], lo[0] : hi[0]]  # mouth 2 px down
    shifted = emo_eval.lip_landmark_shift(detector, src, moved, lm)
    assert shifted["lip_pixel_mse"] > 0 and shifted["lip_px"] > 1.0  # 2 px at 64 px is 8 px at 256


def test_blur_mouth_touches_only_the_mouth(smoke_subject):
    frames = emo_eval.load_source_frames(smoke_subject.root, 1)
    src, lm = frames.images[0], frames.landmarks[0]
    out = emo_eval.blur_mouth(src, lm)
    changed = np.argwhere((out != src).any(axis=-1))
    assert len(changed) > 20
    lips = lm[48:68]
    (lo_x, lo_y), (hi_x, hi_y) = lips.min(0), lips.max(0)
    pad = 0.35 * (lips.max(0) - lips.min(0)) + 1
    assert changed[:, 1].min() >= lo_x - pad[0] and changed[:, 1].max() <= hi_x + pad[0]
    assert changed[:, 0].min() >= lo_y - pad[1] and changed[:, 0].max() <= hi_y + pad[1]


def test_missing_or_unprocessed_subject_is_a_clear_error(tmp_path, capsys):
    from etlib.base import run_main

    assert run_main(emo_eval.main, ["--subject", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "raw").mkdir()
    with pytest.raises(FileNotFoundError, match="not a processed subject"):
        emo_eval.load_source_frames(tmp_path / "raw", 2)
    with pytest.raises(ValueError, match="frames"):
        emo_eval.load_source_frames(tmp_path / "raw", 0)
    with pytest.raises(ValueError, match="preset"):
        emo_eval.evaluate_subject(tmp_path / "raw", tmp_path / "out", preset="huge")


def test_plot_s6_rows_has_a_row_per_point(smoke_subject):
    import matplotlib.pyplot as plt

    from etlib.emoface.offline import OfflineEmotionGenerator
    from etlib.viz.emotion import plot_s6_rows

    frames = emo_eval.load_source_frames(smoke_subject.root, 1)
    rows = emo_eval.make_rows(OfflineEmotionGenerator(), frames, emo_eval.S6_POINTS[:3], progress=False)
    va = {"source": np.zeros((3, 2)), "generated": np.ones((3, 2)), "clone": np.ones((3, 2))}
    axes = plot_s6_rows(rows, va, title="t")
    assert axes.shape == (3, 4) and "judge (+1.00, +1.00)" in axes[0, 1].get_title()
    plt.close("all")
