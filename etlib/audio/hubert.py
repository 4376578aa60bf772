"""HuBERT audio features [22]: the paper's audio encoder input, as TalkingGaussian/ER-NeRF extract it.

HuBERT large fine-tuned on LibriSpeech 960 h (``facebook/hubert-large-ls960-ft``, registry name
``hubert_large``: the checkpoint's ``pytorch_model.bin``) runs through the ``transformers`` implementation.
Its convolutional front end downsamples 16 kHz audio by 320: one 1024-d hidden state every 20 ms (50 Hz).
A 25 fps video frame therefore spans two HuBERT frames; like TalkingGaussian (``aud_hu.npy`` reshaped to
``(-1, 2, 1024)``) the two are concatenated, giving ``(n_frames, 2048)`` float32: the same
``(n_frames, dim)`` layout as :func:`etlib.audio.features.per_frame_features`, so either feeds the model.

The registry holds only the weights; the architecture comes from :data:`HUBERT_LARGE_CONFIG`, the
published ``config.json`` of ``facebook/hubert-large-ls960-ft``. Nothing here downloads.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from etlib import weights
from etlib.audio.signal import as_mono_float, n_video_frames, require_16k
from etlib.base import SAMPLE_RATE

#: HuBERT's hop: 320 samples (20 ms) at 16 kHz, the product of its conv strides (5 * 2**6).
HOP = 320

#: ``facebook/hubert-large-ls960-ft``'s architecture (its config.json, minus training-only fields).
HUBERT_LARGE_CONFIG: dict = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "hidden_act": "gelu",
    "feat_extract_norm": "layer",
    "feat_extract_activation": "gelu",
    "conv_dim": [512] * 7,
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_bias": True,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "do_stable_layer_norm": True,
    "feat_proj_layer_norm": True,
    "layer_norm_eps": 1e-5,
    "vocab_size": 32,
}


def _require_transformers():
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(
            "HuBERT features need the `transformers` package: "
            "pip install -c constraints/cpu.txt transformers (the constraint keeps the CPU torch)"
        ) from exc
    return transformers


def load_hubert(
    path: str | Path | None = None, config: dict | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """A ``transformers.HubertModel`` with the checkpoint's weights, in eval mode.

    Args:
        path: a ``pytorch_model.bin`` (``HubertForCTC`` or ``HubertModel`` state dict); default:
            ``weights.ensure("hubert_large")``.
        config: ``HubertConfig`` fields; default :data:`HUBERT_LARGE_CONFIG`.

    Raises:
        WeightsMissingError: no ``path`` and the weights are not in the etlib cache.
        ImportError: ``transformers`` is not installed.
        ValueError: the file's weights do not fit the configured architecture.
    """
    transformers = _require_transformers()
    path = Path(path) if path is not None else weights.ensure("hubert_large")
    if not path.is_file():
        raise FileNotFoundError(f"HuBERT checkpoint {path} does not exist")
    cfg = transformers.HubertConfig(**(config or HUBERT_LARGE_CONFIG))
    # from_pretrained reads a folder: config.json next to pytorch_model.bin. It also renames old weight-norm
    # keys and strips HubertForCTC's "hubert." prefix, which a plain load_state_dict would not.
    with tempfile.TemporaryDirectory() as tmp:
        cfg.save_pretrained(tmp)
        link = Path(tmp) / "pytorch_model.bin"
        try:
            link.symlink_to(path.resolve())
        except OSError:
            import shutil

            shutil.copyfile(path, link)
        model, info = transformers.HubertModel.from_pretrained(tmp, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if "masked_spec_embed" not in k]  # training-only
    if missing or info.get("mismatched_keys"):
        raise ValueError(
            f"{path} does not fit the HuBERT architecture: missing {sorted(missing)[:5]}, "
            f"mismatched {list(info.get('mismatched_keys', []))[:5]}. Expected facebook/hubert-large-ls960-ft's "
            "pytorch_model.bin (registry name hubert_large)."
        )
    return model.to(device).eval()


@torch.no_grad()
def hubert_hidden_states(model: torch.nn.Module, wave: np.ndarray | torch.Tensor, sr: int = SAMPLE_RATE) -> np.ndarray:
    """HuBERT's last hidden states ``(n_hubert_frames, hidden)`` at 50 Hz for a mono 16 kHz waveform.

    The waveform is normalised to zero mean and unit variance first, as ``Wav2Vec2FeatureExtractor``
    (``do_normalize=True``) does for this checkpoint.
    """
    require_16k(sr)
    x = as_mono_float(wave)
    if len(x) < 400:
        raise ValueError(f"waveform too short for HuBERT: {len(x)} samples, need at least 400 (25 ms)")
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    device = next(model.parameters()).device
    out = model(torch.from_numpy(x).float()[None].to(device)).last_hidden_state[0]
    return out.float().cpu().numpy()


def frames_from_hidden(hidden: np.ndarray, n_frames: int, fps: float = 25.0) -> np.ndarray:
    """Resample 50 Hz HuBERT states to video frames: frame ``t`` gets the two states of its 40 ms.

    Frame ``t`` covers ``[t / fps, (t + 1) / fps)``; HuBERT state ``j`` is centred near ``j * 20 ms``. At
    25 fps this takes states ``2t`` and ``2t + 1`` (TalkingGaussian's layout); past the end of the audio
    the last state repeats. Returns float32 ``(n_frames, 2 * hidden_dim)``.
    """
    if hidden.ndim != 2 or len(hidden) == 0:
        raise ValueError(f"hidden states must be a non-empty (n_hubert_frames, dim) array, got {hidden.shape}")
    if n_frames <= 0:
        raise ValueError(f"need at least one video frame, got n_frames={n_frames}")
    per_second = SAMPLE_RATE / HOP  # 50 Hz
    first = np.floor(np.arange(n_frames) * per_second / fps + 1e-6).astype(np.int64)
    idx = np.clip(np.stack([first, first + 1], axis=1), 0, len(hidden) - 1)
    return hidden[idx].reshape(n_frames, -1).astype(np.float32)


def hubert_per_frame_features(
    wave: np.ndarray | torch.Tensor,
    sr: int = SAMPLE_RATE,
    fps: float = 25.0,
    n_frames: int | None = None,
    model: torch.nn.Module | None = None,
) -> np.ndarray:
    """Per-video-frame HuBERT features ``(n_frames, 2 * 1024)``: the drop-in for ``per_frame_features``.

    ``model`` defaults to :func:`load_hubert` (the registry's ``hubert_large``); ``n_frames`` defaults to
    the whole video frames the audio covers.
    """
    model = model if model is not None else load_hubert()
    total = n_video_frames(len(as_mono_float(wave)), sr, fps) if n_frames is None else int(n_frames)
    return frames_from_hidden(hubert_hidden_states(model, wave, sr), total, fps)
