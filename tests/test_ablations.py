"""Table 4's variants differ from the full model only in what they ablate: the same stages, steps, loss terms,
trained parts and emotional images, but for the one thing each takes away (the paper's Sec. 4.4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from etlib.config import StageIterations, get_preset
from etlib.talking.model import Ablation
from etlib.train.stages import STAGE_NAMES

#: A short schedule for every variant; 6 emotion steps, each on a generated image.
SCHEDULE = StageIterations(2, 2, 4, 4, 6, 2)

#: The loss terms each variant gives up (Eqs. S11-S16): L_normal is the normal L1, its TV and the residual dn.
NORMAL_TERMS = {"normal_l1", "normal_tv", "dn"}


class RecordedTargets:
    """The emotion stage's image source (the offline generator with seamless cloning), recording each request."""

    def __init__(self):
        from etlib.emoface.targets import make_emotion_targets

        self.inner = make_emotion_targets()
        self.requests: list[tuple[float, float]] = []

    def __getattr__(self, name):  # va_relative_to_source and the rest come from the real source
        return getattr(self.inner, name)

    def __call__(self, frame, landmarks, va):
        self.requests.append((round(float(va[0]), 6), round(float(va[1]), 6)))
        return self.inner(frame, landmarks, va)


class CountingSync:
    """A stand-in L_sync that draws nothing from the stages' random streams (the real one draws its clip and window),
    so that runs with and without it see the same emotional images; it counts the steps it was applied to."""

    name = "counting stand-in for L_sync"

    def __init__(self):
        self.calls: dict[str, int] = {}

    def applies(self, iteration: int) -> bool:
        return iteration % 2 == 0

    def __call__(self, model, stage_name, sample_index, rng, deform_face=True) -> torch.Tensor:
        self.calls[stage_name] = self.calls.get(stage_name, 0) + 1
        return torch.zeros(())


def _changed_parts(run: Path) -> dict[str, set[str]]:
    """Per stage, the parts of the model (f_M, f_F, f_E, the mouth and face Gaussians) whose tensors that stage
    changed: its checkpoint against the previous stage's."""
    from etlib.train.checkpoints import model_path

    def flat(state, prefix=""):
        out = {}
        for k, v in state.items():
            if isinstance(v, dict):
                out |= flat(v, f"{prefix}{k}.")
            elif torch.is_tensor(v):
                out[prefix + k] = v
        return out

    changed, before = {}, None
    for stage in STAGE_NAMES:
        now = flat(torch.load(model_path(run, stage), weights_only=True))
        if before is not None:
            keys = [
                k
                for k in now
                if k not in before or now[k].shape != before[k].shape or not torch.equal(now[k], before[k])
            ]
            parts = {k.split(".")[1] if k.startswith("networks.") else k.split(".")[0] for k in keys}
            changed[stage] = parts
        before = now
    return changed


@pytest.fixture(scope="module")
def variant_runs(smoke_subject, tmp_path_factory):
    """Every Table 4 variant trained on the smoke subject with the same short schedule, emotional images and
    stand-in L_sync; about 60 s on 2 cores."""
    from etlib.train import Trainer

    preset = get_preset("smoke").with_overrides(iterations=SCHEDULE)
    root = tmp_path_factory.mktemp("ablations")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runs = {}
    try:
        for name in Ablation.NAMES:
            targets, sync = RecordedTargets(), CountingSync()
            trainer = Trainer(smoke_subject.root, root / name, preset, ablation=name, emotion_targets=targets,
                              sync_loss=sync, progress=False)  # fmt: skip
            state = trainer.run()
            terms = {s: set().union(*(r.keys() for r in trainer.history if r["stage"] == s)) - {"stage", "iteration",
                                                                                                  "loss"}
                     for s in STAGE_NAMES}  # fmt: skip
            steps = {s: sum(r["stage"] == s for r in trainer.history) for s in STAGE_NAMES}
            runs[name] = {"state": state, "terms": terms, "steps": steps, "images": targets.requests,
                          "sync": sync.calls, "changed": _changed_parts(root / name)}  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return runs


@pytest.mark.slow
def test_each_variant_differs_from_the_full_model_only_in_what_it_ablates(variant_runs):
    full = variant_runs["full"]
    assert full["steps"] == SCHEDULE.as_dict() and full["steps"]["emotion_network"] == 6
    assert len(full["images"]) == 6  # every emotion step trains on a generated image (Eq. S15, the presets' share 1)
    assert full["changed"]["emotion_network"] == {"f_E"} and "f_F" in full["changed"]["face_network"]
    assert NORMAL_TERMS <= full["terms"]["face_network"] and "sync" in full["terms"]["emotion_network"]

    expected = {  # what differs from the full model, stage by stage; all else must be equal
        "no_normal_loss": {"terms": {s: full["terms"][s] - NORMAL_TERMS for s in STAGE_NAMES}},
        "no_sync_loss": {"terms": {s: full["terms"][s] - {"sync"} for s in STAGE_NAMES}, "sync": {}},
        # e enters f_F instead of f_E: f_F learns the same emotional images in the emotion stage
        "combined_face_branch": {"changed": full["changed"] | {"emotion_network": {"f_F"}}},
        # no emotion branch at all: no emotion stage, so no emotional images
        "no_emotion_branch": {
            "steps": full["steps"] | {"emotion_network": 0},
            "terms": full["terms"] | {"emotion_network": set()},
            "images": [],
            "sync": {k: v for k, v in full["sync"].items() if k != "emotion_network"},
            "changed": full["changed"] | {"emotion_network": set()},
        },
    }
    for name, differs in expected.items():
        run = variant_runs[name]
        for key in ("steps", "terms", "images", "sync", "changed"):
            assert run[key] == differs.get(key, full[key]), f"{name}: {key}"
        assert run["state"]["completed"] == list(STAGE_NAMES)
        assert run["state"]["ablation"] == Ablation.from_name(name).to_dict()
