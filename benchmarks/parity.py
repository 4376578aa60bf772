#!/usr/bin/env python
"""Forward parity of etlib's ported networks against their reference code, with the same random weights.

    python benchmarks/parity.py --refs DIR [--only wav2lip_syncnet syncnet_v2 ...] [--out parity.json]

``DIR`` holds checkouts of the reference repositories, fetched by hand for this check and never committed (their
licences differ from etlib's: Wav2Lip and EmoNet are non-commercial research code). A checkout's folder is named
after its repository, ``NAME`` or ``OWNER+NAME``:

=================  =================================  ======================================================
check              reference (licence)                etlib
=================  =================================  ======================================================
fan                1adrianb/face-alignment (BSD-3)    FAN as etlib loads it (``face_alignment.models.FAN``)
                                                      and ``etlib.preprocess.landmarks.decode_heatmaps``
wav2lip_syncnet    Rudrabha/Wav2Lip (research only)   ``etlib.audio.syncnet.SyncNet`` (arch ``wav2lip``)
syncnet_v2         joonson/syncnet_python (MIT)       ``etlib.audio.syncnet_v2.SyncNetV2``, ``calc_pdist``,
                   + python_speech_features (MIT)     ``etlib.audio.features.syncnet_mfcc``
emonet             face-analysis/emonet (CC BY-NC-ND) ``etlib.emoface.emonet.EmoNet``
bisenet            zllrunning/face-parsing.PyTorch    ``etlib.preprocess.bisenet.BiSeNet``
                   (MIT)
stylegan2          rosinality/stylegan2-pytorch (MIT) ``etlib.emoface.stylegan2.Generator`` (its CPU paths:
                                                      ``upfirdn2d_native``, the CPU ``fused_leaky_relu``)
=================  =================================  ======================================================

Each check builds the reference network at a fixed seed, perturbs every parameter and buffer (biases, batch-norm
statistics and noise strengths start at 0 or 1, which would hide errors there), loads the same state dict into
etlib's port (``strict``), runs both in evaluation mode on the same random input and reports the largest absolute
difference of every output, and the largest magnitude of that output for scale. Each check runs in a process of its
own (the reference repositories all have top-level modules named ``model``/``models``). Nothing is downloaded: a
reference that tries (face-parsing's ResNet-18 initialisation) is handed the random weights instead. The figures
are in the README ("Figures you can trust").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: check name -> repository name (the folder under --refs, optionally OWNER+NAME)
REPOS = {
    "fan": "face-alignment",
    "wav2lip_syncnet": "Wav2Lip",
    "syncnet_v2": "syncnet_python",
    "emonet": "emonet",
    "bisenet": "face-parsing.PyTorch",
    "stylegan2": "stylegan2-pytorch",
}


def find_checkout(refs: Path, repo: str) -> Path | None:
    """``refs/repo`` or ``refs/OWNER+repo`` (what the fetch leaves), or None."""
    if (refs / repo).is_dir():
        return refs / repo
    found = sorted(p for p in refs.glob(f"*+{repo}") if p.is_dir())
    return found[0] if found else None


# ----------------------------------------------------------------------------------------------
# Helpers (run inside the check's own process)
# ----------------------------------------------------------------------------------------------


def _perturb(module, seed: int = 1, scale: float = 0.05) -> None:
    """Add noise to every floating parameter and buffer except fixed filters, so that zero-initialised biases,
    identity batch-norm statistics and zero noise strengths are exercised too; running variances stay positive."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not t.is_floating_point() or name.endswith(("kernel", "blur.kernel")):
                continue
            noise = torch.randn(t.shape, generator=g) * scale
            if name.endswith("running_var"):
                t.mul_(torch.exp(noise))
            else:
                t.add_(noise)


def _calibrate(module, forward) -> None:
    """Batch-norm statistics of the perturbed network from one forward pass (``forward()``) in training mode, so
    that activations stay near unit scale through deep stacks (random weights alone reach 1e16 in EmoNet); the
    statistics are then perturbed again and the network is left in evaluation mode."""
    import torch
    from torch import nn

    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: exactly this batch's statistics
    module.train()
    with torch.no_grad():
        forward()
    for m in norms:
        m.momentum = 0.1
    _perturb(module, seed=3, scale=0.02)
    for m in module.modules():
        m.training = False


def _diff(ours, theirs) -> dict[str, float]:
    import torch

    ours, theirs = torch.as_tensor(ours).double(), torch.as_tensor(theirs).double()
    if ours.shape != theirs.shape:
        raise AssertionError(f"shapes differ: etlib {tuple(ours.shape)}, reference {tuple(theirs.shape)}")
    diff, scale = float((ours - theirs).abs().max()), float(theirs.abs().max())
    return {"max_abs_diff": diff, "max_abs_value": scale, "relative": diff / scale if scale else 0.0}


def _load_same(ours, theirs) -> None:
    """The reference's state dict into etlib's port, every key (batch-norm counters aside)."""
    state = theirs.state_dict()
    missing, unexpected = ours.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise AssertionError(f"layouts differ: missing {missing[:5]}, unexpected {unexpected[:5]}")


# ----------------------------------------------------------------------------------------------
# The checks
# ----------------------------------------------------------------------------------------------


def check_wav2lip_syncnet(ref: Path) -> dict:
    import torch

    sys.path.insert(0, str(ref))
    from models.syncnet import SyncNet_color

    from etlib.audio.syncnet import SyncNet, SyncNetConfig

    torch.manual_seed(0)
    theirs = SyncNet_color().eval()
    _perturb(theirs)
    ours = SyncNet(SyncNetConfig()).eval()
    _load_same(ours, theirs)
    g = torch.Generator().manual_seed(2)
    mel = torch.randn(3, 1, 80, 16, generator=g) * 2
    faces = torch.rand(3, 15, 48, 96, generator=g)
    with torch.no_grad():
        a_ref, f_ref = theirs(mel, faces)
        a, f = ours(mel, faces)
    return {"audio_embedding": _diff(a, a_ref), "face_embedding": _diff(f, f_ref), "input": "B=3, 48x96 faces"}


def check_syncnet_v2(ref: Path) -> dict:
    import numpy as np
    import python_speech_features
    import torch

    sys.path.insert(0, str(ref))
    from SyncNetModel import S

    from etlib.audio.features import syncnet_mfcc
    from etlib.audio.sync_metrics import calc_pdist
    from etlib.audio.syncnet_v2 import SyncNetV2

    torch.manual_seed(0)
    theirs = S(num_layers_in_fc_layers=1024).eval()
    _perturb(theirs)
    ours = SyncNetV2().eval()
    _load_same(ours, theirs)
    g = torch.Generator().manual_seed(2)
    mfcc = torch.randn(2, 1, 13, 20, generator=g) * 10
    faces = torch.rand(2, 3, 5, 224, 224, generator=g) * 255
    with torch.no_grad():
        out = {
            "audio_embedding": _diff(ours.embed_audio(mfcc), theirs.forward_aud(mfcc)),
            "face_embedding": _diff(ours.embed_faces(faces), theirs.forward_lip(faces)),
        }
    # the MFCC front end, as SyncNetInstance.evaluate computes it, on 3 s of noisy int16 "speech"
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 16000
    wave = 8000 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 500, t.size)
    wave = wave.astype(np.int16)
    out["mfcc"] = _diff(syncnet_mfcc(wave, 16000), python_speech_features.mfcc(wave, 16000).T)
    # calc_pdist, copied from SyncNetInstance.py (importing that module needs its detectors' dependencies)
    source = (ref / "SyncNetInstance.py").read_text()
    start = source.index("def calc_pdist")
    namespace: dict = {"torch": torch, "F": torch.nn.functional}
    exec(source[start : source.index("\n# ====", start)], namespace)  # noqa: S102 - the reference's own function
    f1, f2 = torch.randn(12, 1024, generator=g), torch.randn(12, 1024, generator=g)
    out["calc_pdist"] = _diff(
        torch.stack(calc_pdist(f1, f2, vshift=4)), torch.stack(namespace["calc_pdist"](f1, f2, 4))
    )
    return out | {"input": "B=2 MFCC windows 13x20, B=2 face windows 5x224x224; 3 s of audio"}


def check_emonet(ref: Path) -> dict:
    import torch

    sys.path.insert(0, str(ref))
    from emonet.models import EmoNet as RefEmoNet

    from etlib.emoface.emonet import EmoNet

    torch.manual_seed(0)
    theirs = RefEmoNet(n_expression=8)
    _perturb(theirs)
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    _calibrate(theirs, lambda: theirs(x))  # (its own eval() returns None)
    ours = EmoNet(n_expression=8).eval()
    _load_same(ours, theirs)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    return {k: _diff(a[k], b[k]) for k in ("heatmap", "expression", "valence", "arousal")} | {"input": "B=2, 256x256"}


def check_bisenet(ref: Path) -> dict:
    import torch
    import torch.utils.model_zoo as model_zoo

    model_zoo.load_url = lambda *a, **k: {}  # its ResNet-18 would download ImageNet weights: keep the random ones
    if "torchvision" not in sys.modules:  # model.py imports torchvision and never uses it
        import types

        sys.modules["torchvision"] = types.ModuleType("torchvision")
    sys.path.insert(0, str(ref))
    from model import BiSeNet as RefBiSeNet

    from etlib.preprocess.bisenet import BiSeNet

    torch.manual_seed(0)
    theirs = RefBiSeNet(n_classes=19)
    _perturb(theirs)
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    _calibrate(theirs, lambda: theirs(x))
    ours = BiSeNet(19).eval()
    _load_same(ours, theirs)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    return {name: _diff(p, q) for name, p, q in zip(("out", "out16", "out32"), a, b)} | {"input": "B=2, 256x256"}


def check_stylegan2(ref: Path) -> dict:
    import torch
    import torch.utils.cpp_extension as cpp_extension

    cpp_extension.load = lambda *a, **k: None  # its CUDA kernels: the reference takes its native paths on the CPU
    sys.path.insert(0, str(ref))
    from model import Generator as RefGenerator

    from etlib.emoface.stylegan2 import Generator

    size, style_dim, n_mlp = 32, 64, 4
    torch.manual_seed(0)
    theirs = RefGenerator(size, style_dim, n_mlp, channel_multiplier=2).eval()
    _perturb(theirs, scale=0.1)
    ours = Generator(size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=2).eval()
    _load_same(ours, theirs)
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, style_dim, generator=g)
    ws = torch.randn(2, theirs.n_latent, style_dim, generator=g)
    noise = [getattr(theirs.noises, f"noise_{i}") for i in range(theirs.num_layers)]
    with torch.no_grad():
        image_ref, _ = theirs([ws], input_is_latent=True, noise=noise, randomize_noise=False)
        image = ours(ws)
        w_ref, w = theirs.style(z), ours.style(z)
    return {"mapping_w": _diff(w, w_ref), "image": _diff(image, image_ref),
            "input": f"{size} px, style_dim {style_dim}, {n_mlp}-layer mapping, W+ and z for B=2"}  # fmt: skip


def check_fan(ref: Path) -> dict:
    import face_alignment.models as installed_models  # what etlib loads a FAN state dict into
    import numpy as np
    import torch

    sys.path.insert(0, str(ref))
    for name in [m for m in sys.modules if m.startswith("face_alignment")]:
        del sys.modules[name]
    import face_alignment.models as ref_models
    from face_alignment.utils import get_preds_fromhm

    from etlib.preprocess.landmarks import decode_heatmaps

    if ref.resolve() not in Path(ref_models.__file__).resolve().parents:
        raise AssertionError(f"the reference face_alignment came from {ref_models.__file__}, not {ref}")
    torch.manual_seed(0)
    theirs = ref_models.FAN(4)
    _perturb(theirs)
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    _calibrate(theirs, lambda: theirs(x))
    ours = installed_models.FAN(4).eval()
    _load_same(ours, theirs)
    with torch.no_grad():
        heat_ref, heat = theirs(x)[-1], ours(x)[-1]
    out = {"heatmaps": _diff(heat, heat_ref)}
    rng = np.random.default_rng(3)
    worst, worst_whole = 0.0, 0.0
    for _ in range(20):  # the decoding of random heatmaps, centre and scale into image pixels
        hm = rng.random((1, 68, 64, 64)).astype(np.float32)
        center, scale = rng.uniform(100, 300, 2), float(rng.uniform(0.8, 2.0))
        _, ref_pts, _ = get_preds_fromhm(hm, center, scale)
        ours_pts = decode_heatmaps(hm[0], center, scale).astype(np.float64)
        worst = max(worst, float(np.abs(ours_pts - ref_pts[0]).max()))
        # the reference ends with transform_np's astype(int32): whole pixels, truncated; etlib keeps the sub-pixel
        worst_whole = max(worst_whole, float(np.abs(np.trunc(ours_pts + 1e-4) - ref_pts[0]).max()))
    out["decoded_landmarks_px"] = {"max_abs_diff": worst, "max_abs_value": 400.0, "relative": worst / 400}
    out["decoded_landmarks_truncated_px"] = {"max_abs_diff": worst_whole, "max_abs_value": 400.0,
                                             "relative": worst_whole / 400}  # fmt: skip
    return out | {"input": "B=2, 256x256; 20 random 68x64x64 heatmaps"}


CHECKS = {
    "fan": check_fan,
    "wav2lip_syncnet": check_wav2lip_syncnet,
    "syncnet_v2": check_syncnet_v2,
    "emonet": check_emonet,
    "bisenet": check_bisenet,
    "stylegan2": check_stylegan2,
}


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def run_one(name: str, ref: Path) -> dict:
    """One check in a process of its own; its JSON result, or ``{"error": ...}``."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--one", name, "--ref", str(ref)], capture_output=True,
                          text=True, cwd=ROOT)  # fmt: skip
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1], "reference": str(ref)}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result | {"reference": str(ref), "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refs", type=Path, help="folder of reference checkouts (NAME or OWNER+NAME)")
    parser.add_argument("--only", nargs="*", choices=sorted(CHECKS), help="checks to run (default: all found)")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    parser.add_argument("--one", choices=sorted(CHECKS), help=argparse.SUPPRESS)
    parser.add_argument("--ref", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        import torch

        torch.set_num_threads(1)
        print(json.dumps(CHECKS[args.one](args.ref)))
        return 0
    if args.refs is None or not args.refs.is_dir():
        print(f"error: --refs must be a folder of reference checkouts, got {args.refs}", file=sys.stderr)
        return 2
    results = {}
    for name in args.only or CHECKS:
        ref = find_checkout(args.refs, REPOS[name])
        if ref is None:
            results[name] = {"error": f"no checkout of {REPOS[name]} under {args.refs}"}
            print(f"{name:16s} error: {results[name]['error']}")
            continue
        results[name] = run_one(name, ref)
        for key, value in results[name].items():
            if isinstance(value, dict) and "max_abs_diff" in value:
                print(f"{name:16s} {key:31s} max |etlib - reference| = {value['max_abs_diff']:.3g} "
                      f"(outputs up to {value['max_abs_value']:.3g}; relative {value['relative']:.2g})")  # fmt: skip
        if "error" in results[name]:
            print(f"{name:16s} error: {results[name]['error']}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
