"""What a user meets when something is wrong: one clear line from every command-line tool (a traceback only with
--debug or ETLIB_DEBUG=1), rotation-tagged phone clips preprocessed upright (the decoding itself: test_io.py), valence/arousal refused outside [-1, 1],
training that survives a truncated checkpoint and stops on a non-finite loss, loads that cannot run code, and
mistyped paths that are errors rather than silently skipped features."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from etlib.base import check_va, check_va_array, one_line, run_main
from etlib.io import ffmpeg_exe, probe, read_frames

REPO = Path(__file__).resolve().parent.parent


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def _cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python <args>`` from the repository root, as a person would."""
    full = {k: v for k, v in os.environ.items() if k != "ETLIB_DEBUG"}
    full.update({"OMP_NUM_THREADS": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=full, timeout=timeout, check=False
    )


def _assert_one_line_refusal(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 2, no traceback, and exactly one line on stderr that starts with "error:" and names the
    problem (``needles``)."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------------------------------
# The shared command-line helper
# ----------------------------------------------------------------------------------------------------


def test_run_main_prints_one_line_and_exit_2_and_a_traceback_only_on_request(capsys, monkeypatch):
    def main(argv):
        assert "--debug" not in argv  # the helper removes its own flag
        raise FileNotFoundError("no such thing: x.mp4\n  try another path")

    monkeypatch.delenv("ETLIB_DEBUG", raising=False)
    assert run_main(main, ["a"]) == 2
    err = capsys.readouterr().err
    assert err == "error: no such thing: x.mp4; try another path\n"
    assert run_main(main, ["a", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("error: no such thing: x.mp4; try another path")
    monkeypatch.setenv("ETLIB_DEBUG", "1")
    assert run_main(main, ["a"]) == 2
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.delenv("ETLIB_DEBUG")

    def bug(argv):
        raise ZeroDivisionError("a bug in etlib keeps its traceback")

    with pytest.raises(ZeroDivisionError):
        run_main(bug, [])
    assert run_main(lambda argv: 0, []) == 0 and run_main(lambda argv: None, []) == 0
    assert one_line(KeyError("'x' is unknown")) == "'x' is unknown"


# ----------------------------------------------------------------------------------------------------
# Preprocessing refusals from the command line
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> Path:
    """Inputs a new user might hand to ``python -m etlib.preprocess``."""
    d = tmp_path_factory.mktemp("bad_inputs")
    (d / "notes.mp4").write_text("a text file with a video's name")
    (d / "empty.mp4").write_bytes(b"")
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=128x128:rate=25:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=2",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(d / "noface.mp4"),
    )  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=128x128:rate=25:duration=1", "-c:v", "libx264", str(d / "silent.mp4"))
    data = (d / "noface.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])  # the index (moov) is written last: cut off
    return d


@pytest.mark.parametrize(
    "name, needles",
    [
        ("missing.mp4", ("video not found", "missing.mp4", "check the path")),
        ("notes.mp4", ("not a media file", "notes.mp4")),
        ("empty.mp4", ("empty.mp4 is empty (0 bytes)",)),
        ("truncated.mp4", ("truncated.mp4 is cut short", "moov atom")),
        ("noface.mp4", ("no face found", "facing the camera")),
        ("silent.mp4", ("no audio track", "with its sound")),
    ],
)
def test_preprocess_refusals_are_one_line(bad_inputs, tmp_path, name, needles):
    proc = _cli("-m", "etlib.preprocess", str(bad_inputs / name), str(tmp_path / "out"), "--preset", "smoke", "--quiet")
    _assert_one_line_refusal(proc, *needles)


def test_debug_flag_and_environment_variable_show_the_traceback(bad_inputs, tmp_path):
    args = ["-m", "etlib.preprocess", str(bad_inputs / "truncated.mp4"), str(tmp_path / "out"), "--preset", "smoke"]
    for proc in (_cli(*args, "--debug"), _cli(*args, env={"ETLIB_DEBUG": "1"})):
        assert proc.returncode == 2
        assert "Traceback" in proc.stderr and "MediaError" in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "--debug" in _cli("-m", "etlib.preprocess", "--help").stdout


def test_missing_optional_inputs_of_preprocess_are_errors_up_front(small_sample_subject, tmp_path):
    from etlib.preprocess import preprocess

    video = small_sample_subject / "talking.mp4"
    for flag, kwargs in (("--ground-truth", {"ground_truth": tmp_path / "gt.npz"}), ("--au-csv", {"au_csv": "x.csv"})):
        with pytest.raises(FileNotFoundError, match=f"{flag} .*no such file"):
            preprocess(video, tmp_path / "subject", "smoke", progress=False, **kwargs)
    assert not (tmp_path / "subject" / "frames").exists()  # refused before any step ran


# ----------------------------------------------------------------------------------------------------
# Rotation-tagged and non-square videos
# ----------------------------------------------------------------------------------------------------


def _tag_rotation(src: Path, dst: Path, degrees: int) -> None:
    """Copy ``src`` with a display-rotation tag of ``degrees`` counter-clockwise (what phones write)."""
    try:
        _ffmpeg("-display_rotation", str(degrees), "-i", str(src), "-c", "copy", str(dst))
    except subprocess.CalledProcessError:  # ffmpeg before 6.1: the old stream tag (clockwise)
        _ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", f"rotate={-degrees % 360}", str(dst))


@pytest.fixture(scope="module")
def phone_clip(small_sample_subject, tmp_path_factory) -> tuple[Path, Path]:
    """The sample talking clip made portrait (192x256) and stored sideways with a rotation tag, as a phone
    writes it; and the same portrait clip stored upright, for comparison."""
    d = tmp_path_factory.mktemp("phone")
    portrait, sideways, tagged = d / "portrait.mp4", d / "sideways.mp4", d / "phone.mp4"
    src = small_sample_subject / "talking.mp4"
    _ffmpeg("-i", str(src), "-vf", "pad=192:256:0:32", "-c:v", "libx264", "-qp", "0", "-c:a", "copy", str(portrait))
    # pixels turned a quarter counter-clockwise; the tag turns them back clockwise for display
    _ffmpeg("-i", str(portrait), "-vf", "transpose=2", "-c:v", "libx264", "-qp", "0", "-c:a", "copy", str(sideways))
    _tag_rotation(sideways, tagged, -90)
    return tagged, portrait


def test_phone_clip_with_a_rotation_tag_is_preprocessed_upright(phone_clip, tmp_path):
    from etlib.preprocess import preprocess
    from etlib.preprocess.subject import SubjectDir

    tagged, portrait = phone_clip
    info = probe(tagged)
    assert info.video.coded_size == (256, 192) and info.size == (192, 256)
    a, b = read_frames(tagged, max_frames=5).astype(int), read_frames(portrait, max_frames=5).astype(int)
    assert a.shape == b.shape == (5, 256, 192, 3) and np.abs(a - b).mean() < 1.0
    subject = preprocess(tagged, tmp_path / "subject", "smoke", steps=["frames", "audio", "landmarks"], progress=False)
    meta = SubjectDir(subject.root).meta()
    assert meta["source_size"] == [192, 256]
    assert meta["steps"]["landmarks"]["face_share"] == 1.0  # a face in every frame: it was read upright


# ----------------------------------------------------------------------------------------------------
# Valence/arousal outside [-1, 1] or not finite
# ----------------------------------------------------------------------------------------------------


def test_check_va_accepts_the_range_and_refuses_everything_else():
    assert check_va(-1, 1) == (-1.0, 1.0) and check_va("0.5", np.float32(-0.25)) == (0.5, -0.25)
    for v, a in ((3, 0), (0, -1.0001), (math.nan, 0), (0, math.inf), ("happy", 0), (None, 0)):
        with pytest.raises(ValueError, match=r"in \[-1, 1\].*Sec\. 3\.2"):
            check_va(v, a)
    assert check_va_array([[0.2, -0.3], [1, -1]]).dtype == np.float32
    with pytest.raises(ValueError, match=r"arousal \(row 1\) must be a finite number in \[-1, 1\]"):
        check_va_array([[0.2, -0.3], [0.0, np.nan]])
    with pytest.raises(ValueError, match="pairs"):
        check_va_array([0.1, 0.2, 0.3])


def test_render_api_refuses_out_of_range_valence_arousal(two_stage_run):
    from etlib.render import circle_va, constant_va, keyframe_va, parse_va, render_frames
    from etlib.train.data import SubjectFrames
    from etlib.train.trainer import load_model

    for spec in ("3,0", "nan,0", "0,inf", "0:0,0;1:2,0", "0:0,0;nan:0,0"):
        with pytest.raises(ValueError, match=r"\[-1, 1\]|finite"):
            parse_va(spec)
    with pytest.raises(ValueError, match="cannot read"):
        parse_va("happy")
    assert parse_va("0.5,-0.5")(3.0) == (0.5, -0.5) and parse_va("circle")(0.0)[0] == pytest.approx(0.8)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        constant_va(1.5, 0)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        keyframe_va([(0.0, 0.0, -2.0)])
    with pytest.raises(ValueError, match=r"radius must be in \[0, 1\]"):
        circle_va(radius=1.5)
    data = SubjectFrames.for_run(two_stage_run)
    with pytest.raises(ValueError, match=r"valence must be a finite number in \[-1, 1\]"):
        data.condition(0, va=np.array([2.0, 0.0], np.float32))
    assert data.condition(0, va=np.array([1.0, -1.0])).va.tolist() == [1.0, -1.0]
    audio = np.zeros(1600, np.float32)
    model = load_model(two_stage_run)
    with pytest.raises(ValueError, match=r"arousal \(row 1\) must be a finite number in \[-1, 1\]"):
        next(render_frames(model, data, audio, np.array([[0.0, 0.0], [0.0, 5.0]]), progress=False))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):  # a function path is checked frame by frame
        next(render_frames(model, data, audio, lambda t: (7.0, 0.0), progress=False))
    frame = next(render_frames(model, data, audio, lambda t: (1.0, -1.0), progress=False))
    assert frame.dtype == np.uint8 and frame.shape[2] == 3


def test_render_cli_refuses_out_of_range_valence_arousal_before_loading_anything(tmp_path):
    for va in ("3,0", "nan,0"):
        proc = _cli("-m", "etlib.render", "--run", str(tmp_path / "no_run"), "--text", "hi", "--va", va,
                    "--out", str(tmp_path / "x.mp4"))  # fmt: skip
        _assert_one_line_refusal(proc, "[-1, 1]", "Sec. 3.2")
    assert not (tmp_path / "x.mp4").exists()


# ----------------------------------------------------------------------------------------------------
# Training: truncated checkpoints, non-finite losses, crafted run folders, loads that cannot run code
# ----------------------------------------------------------------------------------------------------


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic reductions: resumed runs compare bit for bit
    yield
    torch.set_num_threads(n)


def _params(run_dir: Path) -> dict:
    from etlib.train.trainer import load_model, model_state

    return model_state(load_model(run_dir))


def _assert_same_params(a: dict, b: dict) -> None:
    for layer in ("mouth", "face"):
        for key, value in a[layer].items():
            torch.testing.assert_close(b[layer][key], value, rtol=1e-5, atol=1e-6, msg=f"{layer}.{key}")
    for name, sd in a["networks"].items():
        for key, value in sd.items():
            torch.testing.assert_close(b["networks"][name][key], value, rtol=1e-5, atol=1e-6, msg=f"{name}.{key}")


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture(scope="module")
def two_stage_run(smoke_subject, tmp_path_factory) -> Path:
    """A smoke run through mouth_canonical and mouth_network (the reference the recoveries must reproduce)."""
    from etlib.train import Trainer

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = tmp_path_factory.mktemp("reference") / "run"
        Trainer(smoke_subject.root, run, "smoke", progress=False).run(["mouth_canonical", "mouth_network"])
    finally:
        torch.set_num_threads(n)
    return run


def test_truncated_final_checkpoint_is_reported_and_training_resumes_from_the_previous_one(
    smoke_subject, two_stage_run, tmp_path, capfd, one_thread
):
    from etlib.train import Trainer
    from etlib.train.checkpoints import CheckpointError
    from etlib.train.trainer import load_model

    run = tmp_path / "run"
    shutil.copytree(two_stage_run, run)
    bad = run / "checkpoints" / "model_mouth_network.pt"
    _truncate(bad)
    with pytest.raises(CheckpointError, match="model_mouth_network.pt cannot be read.*truncated or corrupt"):
        load_model(run)  # rendering from it is refused with the file's name and the way out
    proc = _cli("-m", "etlib.render", "--run", str(run), "--text", "hi", "--out", str(tmp_path / "x.mp4"))
    _assert_one_line_refusal(proc, "model_mouth_network.pt", "truncated or corrupt", "python -m etlib.train")

    capfd.readouterr()
    trainer = Trainer(smoke_subject.root, run, "smoke", progress=False)
    err = capfd.readouterr().err
    assert "model_mouth_network.pt" in err and "resuming from model_mouth_canonical.pt" in err
    assert trainer.state["completed"] == ["mouth_canonical"]
    assert trainer.state["recovered"][0]["checkpoint"] == "checkpoints/model_mouth_network.pt"
    assert (run / "checkpoints" / "model_mouth_network.pt.corrupt").exists()  # kept for inspection
    trainer.run(["mouth_canonical", "mouth_network"])
    _assert_same_params(_params(two_stage_run), _params(run))  # the re-trained stage equals the original


def test_when_no_good_checkpoint_is_left_training_says_so_and_starts_over(
    smoke_subject, two_stage_run, tmp_path, capfd
):
    from etlib.train import Trainer

    run = tmp_path / "run"
    shutil.copytree(two_stage_run, run)
    for stage in ("mouth_canonical", "mouth_network"):
        _truncate(run / "checkpoints" / f"model_{stage}.pt", 0.1)
    capfd.readouterr()
    trainer = Trainer(smoke_subject.root, run, "smoke", progress=False)
    assert "no good checkpoint is left, so training starts again from the first stage" in capfd.readouterr().err
    assert trainer.state["completed"] == [] and len(trainer.state["recovered"]) == 2
    assert trainer.history == []  # the loss rows of the dropped stages went with them


def test_truncated_mid_stage_checkpoint_falls_back_to_the_one_before_and_resumes_exactly(
    smoke_subject, tmp_path, monkeypatch, capfd, one_thread
):
    from etlib.config import get_preset
    from etlib.train import Trainer
    from etlib.train.checkpoints import latest_paths

    preset = get_preset("smoke").with_overrides(checkpoint_every=5)  # saves after steps 4, 9, 14 of 20
    unbroken = tmp_path / "unbroken"
    Trainer(smoke_subject.root, unbroken, preset, progress=False).run(["mouth_canonical"])

    run = tmp_path / "run"
    original = Trainer.stage_loss

    def stop_at_16(self, stage, sample, rng, it=0):
        if it == 16:
            raise KeyboardInterrupt  # the person pressed Ctrl-C
        return original(self, stage, sample, rng, it)

    monkeypatch.setattr(Trainer, "stage_loss", stop_at_16)
    with pytest.raises(KeyboardInterrupt):
        Trainer(smoke_subject.root, run, preset, progress=False).run(["mouth_canonical"])
    monkeypatch.setattr(Trainer, "stage_loss", original)
    latest, previous = latest_paths(run, "mouth_canonical")
    assert torch.load(latest, weights_only=True)["iteration"] == 14
    assert torch.load(previous, weights_only=True)["iteration"] == 9
    _truncate(latest)
    capfd.readouterr()
    Trainer(smoke_subject.root, run, preset, progress=False).run(["mouth_canonical"])
    err = capfd.readouterr().err
    assert "latest_mouth_canonical.pt cannot be read" in err
    assert "resumes from the older checkpoint previous_mouth_canonical.pt (after step 9)" in err
    assert not latest.exists() and not previous.exists()  # a finished stage keeps only its final model
    _assert_same_params(_params(unbroken), _params(run))


def test_a_nan_in_a_loss_term_stops_the_stage_before_anything_is_saved(smoke_subject, tmp_path, monkeypatch):
    from etlib.config import get_preset
    from etlib.train import Trainer
    from etlib.train.checkpoints import latest_paths
    from etlib.train.trainer import NonFiniteError

    preset = get_preset("smoke").with_overrides(checkpoint_every=5)
    original = Trainer.stage_loss

    def nan_at_7(self, stage, sample, rng, it=0):
        total, terms, meta = original(self, stage, sample, rng, it)
        if it == 7:
            terms = {**terms, "dssim": float("nan")}
            total = total * float("nan")
        return total, terms, meta

    monkeypatch.setattr(Trainer, "stage_loss", nan_at_7)
    run = tmp_path / "run"
    trainer = Trainer(smoke_subject.root, run, preset, progress=False)
    with pytest.raises(NonFiniteError) as info:
        trainer.run(["mouth_canonical"])
    msg = str(info.value)
    assert "stage mouth_canonical, step 7" in msg and "loss term dssim is nan" in msg
    assert "nothing of this step was saved" in msg and "latest_mouth_canonical.pt, is kept" in msg
    latest, previous = latest_paths(run, "mouth_canonical")
    assert torch.load(latest, weights_only=True)["iteration"] == 4  # the last save before the NaN
    assert not previous.exists() and not (run / "checkpoints" / "model_mouth_canonical.pt").exists()
    for value in torch.load(latest, weights_only=True)["model"]["mouth"].values():
        assert torch.isfinite(value).all()
    assert json.loads((run / "state.json").read_text())["completed"] == []


def test_non_finite_parameters_are_never_checkpointed(smoke_subject, tmp_path):
    from etlib.train import Trainer
    from etlib.train.stages import get_stage
    from etlib.train.trainer import NonFiniteError

    trainer = Trainer(smoke_subject.root, tmp_path / "run", "smoke", progress=False)
    with torch.no_grad():
        trainer.model.mouth.params["means"][0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="stage mouth_canonical, step 3: the mouth Gaussians' means"):
        trainer._save_latest(get_stage("mouth_canonical"), 3, {}, None, None, np.random.default_rng(0))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_crafted_state_json_cannot_point_the_load_outside_the_run(two_stage_run, tmp_path, smoke_subject):
    from etlib.train import Trainer
    from etlib.train.checkpoints import RunStateError, read_run_state
    from etlib.train.trainer import load_model

    outside = tmp_path / "elsewhere.pt"
    torch.save({"format": "x"}, outside)
    run = tmp_path / "run"
    shutil.copytree(two_stage_run, run)
    state = json.loads((run / "state.json").read_text())
    for completed in (["mouth_canonical", "../../elsewhere"], ["mouth_network"], "mouth_canonical", [1]):
        (run / "state.json").write_text(json.dumps({**state, "completed": completed}))
        with pytest.raises(RunStateError, match="not an etlib run|not the first stages|must be a list"):
            load_model(run)
        with pytest.raises(RunStateError):
            Trainer(smoke_subject.root, run, "smoke", progress=False)
    (run / "state.json").write_text("{not json")
    with pytest.raises(RunStateError, match="not valid JSON"):
        read_run_state(run)
    proc = _cli("-m", "etlib.render", "--run", str(run), "--text", "hi", "--out", str(tmp_path / "x.mp4"))
    _assert_one_line_refusal(proc, "state.json is not valid JSON")


class _RunsCode:
    """Unpickling this calls ``Path.touch`` on a marker: any load that executes pickled code leaves the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoints_load_without_running_code(two_stage_run, tmp_path):
    from etlib.train.checkpoints import CheckpointError, load_checkpoint
    from etlib.train.trainer import load_model

    marker = tmp_path / "code_ran"
    run = tmp_path / "run"
    shutil.copytree(two_stage_run, run)
    torch.save({"format": "etlib.EmoTalkingGaussian/1", "payload": _RunsCode(marker)},
               run / "checkpoints" / "model_mouth_network.pt")  # fmt: skip
    with pytest.raises(CheckpointError, match="model_mouth_network.pt holds more than tensors and plain data"):
        load_model(run)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "none.pt")
    with open(tmp_path / "list.pt", "wb") as fh:
        pickle.dump([1, 2], fh)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "list.pt")
    assert load_checkpoint(two_stage_run / "checkpoints" / "model_mouth_network.pt")["format"]


def test_no_unsafe_torch_load_is_left_in_the_code():
    offenders = []
    for path in [*REPO.joinpath("etlib").rglob("*.py"), *REPO.joinpath("benchmarks").glob("*.py")]:
        text = path.read_text()
        if "weights_only=False" in text or "pickle.load(" in text:
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


# ----------------------------------------------------------------------------------------------------
# Mistyped or missing inputs: errors, never silently skipped features
# ----------------------------------------------------------------------------------------------------


def test_mistyped_syncnet_path_is_an_error_not_a_silently_dropped_term(smoke_subject, tmp_path):
    from etlib.train.data import SubjectFrames
    from etlib.train.sync import make_sync_loss

    with pytest.raises(FileNotFoundError, match="no SyncNet checkpoint at .*syncnet.pth"):
        make_sync_loss(SubjectFrames(smoke_subject.root), tmp_path / "syncnet.pth")
    proc = _cli("-m", "etlib.train", "--subject", str(smoke_subject.root), "--out", str(tmp_path / "run"),
                "--preset", "smoke", "--syncnet", str(tmp_path / "syncnet.pth"), "--quiet")  # fmt: skip
    _assert_one_line_refusal(proc, "--syncnet", "syncnet.pth", "no such file")
    assert not (tmp_path / "run").exists()


def test_missing_subject_run_and_audio_are_one_line_each(smoke_subject, two_stage_run, tmp_path):
    proc = _cli("-m", "etlib.train", "--subject", str(tmp_path / "nobody"), "--out", str(tmp_path / "run"),
                "--preset", "smoke", "--quiet")  # fmt: skip
    _assert_one_line_refusal(proc, "no subject folder at", "python -m etlib.preprocess")
    proc = _cli(
        "-m", "etlib.render", "--run", str(tmp_path / "no_run"), "--text", "hi", "--out", str(tmp_path / "x.mp4")
    )
    _assert_one_line_refusal(proc, "no training run at", "python -m etlib.train")
    proc = _cli("-m", "etlib.render", "--run", str(two_stage_run), "--audio", str(tmp_path / "speech.wav"),
                "--out", str(tmp_path / "x.mp4"))  # fmt: skip
    _assert_one_line_refusal(proc, "no such media file", "speech.wav")
    moved = tmp_path / "moved_run"  # a run whose subject folder is gone (was: a bare "va.npy not found")
    shutil.copytree(two_stage_run, moved)
    state = json.loads((moved / "state.json").read_text())
    (moved / "state.json").write_text(json.dumps({**state, "subject": str(tmp_path / "gone")}))
    proc = _cli("-m", "etlib.render", "--run", str(moved), "--text", "hi", "--out", str(tmp_path / "x.mp4"))
    _assert_one_line_refusal(proc, "the subject folder this run was trained on", "does not exist")


def test_optional_terms_that_are_off_are_said_up_front_and_recorded(smoke_subject, tmp_path, capfd, monkeypatch):
    from etlib.train import Trainer

    run = tmp_path / "run"
    trainer = Trainer(smoke_subject.root, run, "smoke", progress=False)
    capfd.readouterr()
    seen = {}
    original = Trainer.run_stage

    def run_stage(self, stage):  # what state.json says when the first stage starts
        seen.setdefault("state", json.loads((run / "state.json").read_text()))
        return original(self, stage)

    monkeypatch.setattr(Trainer, "run_stage", run_stage)
    trainer.run(["mouth_canonical"])
    err = capfd.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note: optional loss term sync is off")]
    assert len(notes) == 1 and "--syncnet PATH" in notes[0]
    assert "no SyncNet given" in seen["state"]["terms_dropped"]["sync"]


def test_openface_reads_a_folder_of_frames_with_fdir(tmp_path):
    from etlib.preprocess.action_units import AU_NAMES, OpenFaceError, run_openface

    log = tmp_path / "args.txt"
    fake = tmp_path / "FeatureExtraction"
    header = ", ".join(["frame", *[f"{n}_r" for n in AU_NAMES]])
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {log}\n'
        'while [ "$1" != "-out_dir" ]; do shift; done\n'
        f'printf "{header}\\n1, {", ".join("0.5" for _ in AU_NAMES)}\\n" > "$2/out.csv"\n'
    )
    fake.chmod(0o755)
    frames = tmp_path / "frames"
    frames.mkdir()
    aus = run_openface(frames, exe=str(fake))
    assert log.read_text().split()[:2] == ["-fdir", str(frames)] and aus.shape == (1, len(AU_NAMES))
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    run_openface(video, exe=str(fake))
    assert log.read_text().split()[:2] == ["-f", str(video)]
    failing = tmp_path / "Broken"
    failing.write_text("#!/bin/sh\necho 'cannot open the model files' >&2\nexit 3\n")
    failing.chmod(0o755)
    with pytest.raises(OpenFaceError, match="exit 3.*cannot open the model files.*--au-csv"):
        run_openface(frames, exe=str(failing))
