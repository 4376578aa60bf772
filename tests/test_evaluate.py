"""Evaluation (Tables 1-4): the table logic on small synthetic inputs, and the CLI end to end on a tiny run."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch

from etlib.config import S6_POINTS
from etlib.evaluation import paper_tables as ev
from etlib.preprocess.action_units import AU_NAMES, UPPER_FACE_AUS
from etlib.preprocess.template import mean_face_68


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _face(t: int = 6) -> np.ndarray:
    """(t, 68, 2) pixel landmarks of the frontal mean face, about 100 px across."""
    lm = mean_face_68()[:, :2]
    lm = (lm - lm.mean(0)) / np.ptp(lm[:, 0]) * 100 + 128
    return np.repeat(lm[None], t, axis=0).astype(np.float64)


def test_upper_au_condition_picks_the_upper_face_units_scaled_to_one():
    aus = np.arange(2 * len(AU_NAMES), dtype=np.float32).reshape(2, -1) % 5
    cond = ev.upper_au_condition(aus)
    assert cond.shape == (2, len(UPPER_FACE_AUS))
    for j, name in enumerate(UPPER_FACE_AUS):
        np.testing.assert_allclose(cond[:, j], aus[:, AU_NAMES.index(name)] / 5)
    with pytest.raises(ValueError, match="AU_NAMES"):
        ev.upper_au_condition(aus[:, :7])


def test_au_errors_are_zero_for_identical_faces_and_see_raised_brows_in_the_upper_face():
    from etlib.preprocess.action_units import neutral_reference

    true = _face()
    neutral = neutral_reference(true)
    same = ev.au_errors(true, true.copy(), neutral)
    assert same["aue_u"] == 0 and same["aue_l"] == 0 and same["frames"] == 6
    raised = true.copy()
    raised[:, 17:27, 1] -= 8  # brows 8 px up
    err = ev.au_errors(raised, true, neutral)
    assert err["aue_u"] > 0.2 and err["aue_l"] < 0.05
    missing = raised.copy()
    missing[:3] = np.nan  # no face found on half the renders: those frames are skipped
    assert ev.au_errors(missing, true, neutral)["frames"] == 3
    assert ev.au_errors(np.full_like(true, np.nan), true, neutral)["aue_u"].startswith("unavailable")


def test_emotion_metrics_follow_eqs_s17_s18_and_top3():
    target, labels = ev.s6_schedule(2)
    assert target.shape == (24, 2) and labels[:2] == ["Happy", "Happy"] and labels[-1] == "Contempt"
    classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    probs = np.zeros((24, 7))
    for k, label in enumerate(labels):  # the right class first where the judge has it
        probs[k, classes.index(label.lower()) if label != "Contempt" else 6] = 1
    perfect = ev.emotion_metrics(target, target, probs, classes, labels)
    assert perfect["v_rmse"] == 0 and perfect["a_rmse"] == 0 and perfect["v_sa"] == 1 and perfect["a_sa"] == 1
    contempt = labels.count("Contempt")
    assert perfect["e_acc_unreachable_frames"] == contempt
    assert perfect["e_acc"] == pytest.approx(100 * (24 - contempt) / 24)
    assert perfect["e_acc_reachable"] == pytest.approx(100)
    flipped = ev.emotion_metrics(-target, target, probs, classes, labels)
    assert flipped["v_sa"] == 0 and flipped["a_sa"] == 0
    assert flipped["v_rmse"] == pytest.approx(np.sqrt(np.mean((2 * target[:, 0]) ** 2)))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        ev.emotion_metrics(target[:, :1], target, probs, classes, labels)


def test_audio_of_frames_slices_25fps_frames_and_pads_past_the_end():
    audio = np.arange(640 * 4, dtype=np.float32)
    part = ev.audio_of_frames(audio, 1, 2)
    np.testing.assert_array_equal(part, audio[640:1920])
    tail = ev.audio_of_frames(audio, 3, 2)
    assert len(tail) == 1280 and np.all(tail[640:] == 0) and tail[0] == 1920


def test_clip_sync_without_a_syncnet_reports_unavailable_not_a_number():
    frames = np.zeros((8, 32, 32, 3), np.uint8)
    out = ev.clip_sync(frames, _face(8) / 8, np.zeros(640 * 8, np.float32), None)
    assert out["sync_e"] == out["sync_c"] == "unavailable: no SyncNet for this subject"


def test_markdown_and_csv_keep_unavailable_cells_and_their_reasons():
    table = ev.Table(
        "t",
        "Table X",
        [("Method", ("Method",)), ("Sync-E/C", ("sync_e", "sync_c")), ("LPIPS", ("lpips",)), ("PSNR", ("psnr",))],
        [
            {"Method": "Ours", "sync_e": 7.70249, "sync_c": 6.2, "lpips": "unavailable: no AlexNet", "psnr": 33.781},
            {"Method": "Other", "sync_e": None, "sync_c": float("nan"), "lpips": 0.02671, "psnr": 30},
        ],
        ["a note"],
    )
    md = ev.to_markdown(table)
    assert "| Ours | 7.702/6.200 | unavailable | 33.78 |" in md
    assert "| Other | -/nan | 0.0267 | 30 |" in md
    assert "* a note" in md and "`unavailable`: no AlexNet" in md
    rows = list(csv.reader(io.StringIO(ev.to_csv(table))))
    assert rows[0] == ["Method", "sync_e", "sync_c", "lpips", "psnr"]
    assert rows[1][3] == "unavailable: no AlexNet" and float(rows[1][1]) == pytest.approx(7.70249)
    assert rows[2][1] == ""


def test_ablation_rows_without_runs_say_not_trained(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"terms_dropped": {"lpips": "unavailable: x"}}))
    measured = {"lpips": "unavailable: x", "sync_c": 1.5, "e_acc": 40.0}
    result = ev.ablations("unused", {"full": tmp_path}, None, np.zeros(1), ev.EvalSettings(), {"full": measured})
    rows = {r["Method"]: r for r in result["rows"]}
    assert list(rows) == list(ev.ABLATION_LABELS.values())
    assert rows["Ours"]["sync_c"] == 1.5 and "lpips unavailable" in rows["Ours"]["notes"]
    for name in ("Ours w/o L_normal", "Ours w/o L_sync", "Combined face b.", "Ours w/o emo. b."):
        assert rows[name]["e_acc"] == "not trained"
    assert ev.ablation_name(ev.Ablation.from_name("combined_face_branch")) == "combined_face_branch"


def test_find_syncnet_prefers_an_explicit_file_then_a_subject_checkpoint(tmp_path, weights_cache):
    from etlib.audio.syncnet import train_syncnet

    net, status = ev.find_syncnet(search=[tmp_path])
    assert net is None and status == "unavailable: no SyncNet for this subject"
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (30, 16, 32, 3), dtype=np.uint8)
    mel = rng.uniform(-4, 4, (80, 120)).astype(np.float32)
    train_syncnet(frames, mel, iterations=1, batch_size=2, checkpoint_path=tmp_path / "syncnet.pt", progress=False)
    net, status = ev.find_syncnet(search=[tmp_path / "nowhere", tmp_path])
    assert net is not None and str(tmp_path / "syncnet.pt") in status and net.config.face_hw == (16, 32)


def test_settings_exist_for_every_preset():
    from etlib.config import PRESETS

    for name in PRESETS:
        assert ev.settings_for(name).frames_per_point >= 1
    with pytest.raises(ValueError, match="preset"):
        ev.settings_for("huge")
    assert len(S6_POINTS) == 12


# ------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------


def _check_sync_cells(row: dict) -> None:
    """Sync-E, Sync-C and the AV offset of a row are those of its distance-per-offset curve (``syncnet_python``'s
    ``evaluate``: the minimum, the median less the minimum, vshift less the argmin), and the curve has one mean
    distance per offset in [-15, 15]."""
    curve = np.asarray(row["mean_distances"])
    assert curve.shape == (31,) and row["windows"] >= 1
    assert row["sync_e"] == pytest.approx(curve.min())
    assert row["sync_c"] == pytest.approx(np.median(curve) - curve.min())
    assert row["av_offset"] == 15 - int(np.argmin(curve))


@pytest.mark.slow
def test_cli_writes_tables_1_to_4_for_a_tiny_run(smoke_subject, tmp_path):
    from etlib.audio.features import log_mel
    from etlib.audio.sync_metrics import mouth_crops
    from etlib.audio.syncnet import train_syncnet
    from etlib.io import read_audio
    from etlib.metrics import lpips_status
    from etlib.train import Trainer

    Trainer(smoke_subject.root, tmp_path / "run", "smoke", progress=False).run()
    # A SyncNet of the subject (a few steps: the numbers only need to exist and be finite here).
    frames = np.stack([smoke_subject.read_frame(i) for i in range(smoke_subject.n_frames)])
    crops = mouth_crops(frames, np.load(smoke_subject.landmarks), out_hw=(16, 32))
    mel = log_mel(read_audio(smoke_subject.audio, sr=16000))
    train_syncnet(crops, mel, iterations=2, batch_size=4, checkpoint_path=tmp_path / "syncnet.pt", progress=False)

    out = tmp_path / "eval"
    printed = []
    args = ["--subject", str(smoke_subject.root), "--run", str(tmp_path / "run"), "--out", str(out), "--quiet"]
    assert ev.main(args + ["--syncnet", str(tmp_path / "syncnet.pt")], print_fn=printed.append) == 0

    names = ["tables.md", "report.json", *(f"table{k}.csv" for k in range(1, 5))]
    names += ["table1.png", "emotion_renders.png", "emotion_va.png", "sync_offsets.png", "reconstructions.png"]
    for name in names:
        assert (out / name).stat().st_size > 0, name
    assert "Table 1. Self-reconstruction" in printed[0]

    t1 = {r["Method"]: r for r in csv.DictReader(open(out / "table1.csv"))}
    assert list(t1) == ["Ground truth", "Ours w/o Emo. branch", "Ours"]
    ours = t1["Ours"]
    assert 10 < float(ours["psnr"]) < 60 and 0 < float(ours["ssim"]) <= 1 and float(ours["fps"]) > 0
    if not lpips_status()[0]:
        assert ours["lpips"].startswith("unavailable")  # never a stand-in number
    assert "syncnet:offline-trained" in ours["backends"] and "dlib" in ours["backends"]

    report = json.loads((out / "report.json").read_text())
    rows1 = {r["Method"]: r for r in report["tables"]["table1"]["rows"]}
    for name in ("Ground truth", "Ours"):  # the csv's numbers are the curve's (syncnet_python's evaluate)
        _check_sync_cells(rows1[name])
        assert float(t1[name]["sync_e"]) == pytest.approx(rows1[name]["sync_e"])
    t3 = {r["Method"]: r for r in report["tables"]["table3"]["rows"]}
    assert len(t3) == 2
    n3 = 12 * ev.settings_for("smoke").frames_per_point
    for row in t3.values():
        assert row["frames"] == n3
        _check_sync_cells(row)
        # shares of n3 judged frames; E-Acc counts the frames whose label the judge lacks as misses
        for key in ("v_sa", "a_sa"):
            assert row[key] * n3 == pytest.approx(round(row[key] * n3))
        reachable = n3 - row["e_acc_unreachable_frames"]
        assert row["e_acc"] == pytest.approx(row["e_acc_reachable"] * reachable / n3)
        assert row["e_acc"] * n3 / 100 == pytest.approx(round(row["e_acc"] * n3 / 100))
        assert row["psnr_emotion_clip"].startswith("unavailable")
    assert report["backends"]["judge"].startswith(("fer", "emonet"))
    clips = report["results"]["table2"]["clips"]
    t2 = report["tables"]["table2"]["rows"][0]
    for name, clip in clips.items():
        _check_sync_cells(clip)
        assert t2[f"sync_e|{name}"] == clip["sync_e"] and t2[f"sync_c|{name}"] == clip["sync_c"]
    # Table 2 speaks the held-out sets, in voices training does not use, and measures that training never heard them
    from etlib.audio.heldout import HEARD_THRESHOLD

    assert list(clips) == ["Set A", "Set B"]
    speech, heard = report["results"]["table2"]["speech"], report["results"]["table2"]["heard"]
    assert "en-gb+m7" in speech["Set A"] and "Please pack the blue umbrella" in speech["Set A"]
    assert set(heard) == set(clips) and max(heard.values()) < HEARD_THRESHOLD
    assert any("Never heard in training" in n for n in report["tables"]["table2"]["notes"])
    # every metric column of every table has its instrument named, with how it relates to training
    metrics = ("PSNR", "SSIM", "LPIPS", "LMD", "Sync", "AUE", "V-RMSE", "A-RMSE", "V-SA", "A-SA", "E-Acc")
    sections = (out / "tables.md").read_text().split("### ")[1:]
    assert len(sections) == 4
    for section in sections:
        header = next(line for line in section.splitlines() if line.startswith("| Method"))
        note = next(line for line in section.splitlines() if line.startswith("* Instruments: "))
        shown = [m for m in metrics if m in header]
        assert shown and all(m in note for m in shown), (section.splitlines()[0], shown, note)
        assert "independent of training (not the SyncNet of L_sync" in note
    # every table names the Sync-E/C instrument and what L_sync trained with (here nothing: no SyncNet in training)
    for name in ("table1", "table2", "table3", "table4"):
        assert any("L_sync trained with no SyncNet" in n for n in report["tables"][name]["notes"]), name
    t4 = {r["Method"]: r for r in report["tables"]["table4"]["rows"]}
    assert t4["Ours"]["sync_c"] == pytest.approx(float(ours["sync_c"]))
    assert t4["Combined face b."]["e_acc"] == "not trained"
