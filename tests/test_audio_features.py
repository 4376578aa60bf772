"""Log-mel features: Wav2Lip's preprocessing (hparams.py / audio.py) re-implemented without librosa."""

import numpy as np
import pytest

from etlib.audio.features import (
    SILENCE,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    mel_to_hz,
    mel_window_for_frame,
    mel_windows,
    per_frame_features,
)
from etlib.audio.signal import n_video_frames

SR = 16000


def tone(freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def reference_signal() -> np.ndarray:
    """0.5 s of a 3 Hz-modulated 440 Hz tone plus a 2.5 kHz tone (deterministic)."""
    t = np.arange(8000) / SR
    return 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.1 * np.sin(2 * np.pi * 2500 * t)


def test_slaney_mel_scale_fixed_points():
    # Slaney: 200/3 Hz per mel below 1 kHz, then 27 mels per factor 6.4.
    assert hz_to_mel(1000.0) == pytest.approx(15.0)
    assert hz_to_mel(500.0) == pytest.approx(7.5)
    assert hz_to_mel(6400.0) == pytest.approx(42.0)
    f = np.array([55.0, 700.0, 1000.0, 3000.0, 7600.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, rtol=1e-12)


def test_filterbank_matches_librosa_values():
    # Numbers printed by librosa 0.10.2 filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600).
    fb = mel_filterbank(SR, 800, 80, 55, 7600)
    assert fb.shape == (80, 401)
    np.testing.assert_allclose(fb[3, 8:13], [0.0, 0.01328163, 0.02687878, 0.01140041, 0.0], atol=1e-7)
    assert np.nonzero(fb[79])[0].tolist() == list(range(353, 380))
    np.testing.assert_allclose(fb[79, 353], 4.26863771e-05, rtol=1e-5)
    np.testing.assert_allclose(fb[79, 366], 3.63533990e-03, rtol=1e-6)


def test_log_mel_matches_wav2lip_reference():
    # Wav2Lip's melspectrogram() with librosa 0.10.2 (pad_mode="reflect", librosa 0.7's default).
    mel = log_mel(reference_signal())
    assert mel.shape == (80, 41) and mel.dtype == np.float32
    expected = {
        (6, 2): -3.38627,
        (6, 37): -3.49531,
        (9, 12): 1.5015,
        (9, 27): 1.37398,
        (12, 2): -2.1945,
        (12, 17): -2.40676,
        (12, 32): -2.87202,
        (51, 7): -0.23875,
        (0, 0): -1.18357,
        (79, 40): -1.72882,
        (20, 10): -4.0,
    }
    for (b, f), value in expected.items():
        assert mel[b, f] == pytest.approx(value, abs=2e-5), (b, f)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0, 6000.0])
def test_pure_tone_lands_in_its_mel_bin(freq):
    mel = log_mel(tone(freq, 0.5))
    centres = mel_to_hz(np.linspace(hz_to_mel(55), hz_to_mel(7600), 82))[1:-1]
    peak = int(np.argmax(mel[:, 5:-5].mean(axis=1)))
    assert abs(peak - int(np.argmin(np.abs(centres - freq)))) <= 1
    assert mel.max() <= 4.0 and mel.min() >= -4.0


def test_silence_is_minus_four_and_int16_equals_float():
    assert np.all(log_mel(np.zeros(4000, np.float32)) == SILENCE)
    wave = tone(500.0, 0.25)
    pcm = np.round(wave * 32767).astype(np.int16)
    np.testing.assert_allclose(log_mel(pcm), log_mel(pcm.astype(np.float32) / 32768), atol=1e-6)


@pytest.mark.parametrize("seconds,frames", [(1.0, 81), (2.5, 201), (0.2, 17)])
def test_mel_length_is_80_frames_a_second(seconds, frames):
    assert log_mel(tone(440.0, seconds)).shape == (80, frames)


def test_window_for_frame_follows_wav2lip_indexing_and_pads():
    mel = log_mel(tone(440.0, 1.0))  # 81 mel frames, 25 video frames
    np.testing.assert_array_equal(mel_window_for_frame(mel, 0), mel[:, 0:16])
    np.testing.assert_array_equal(mel_window_for_frame(mel, 2), mel[:, 6:22])  # int(80 * 2 / 25) = 6
    np.testing.assert_array_equal(mel_window_for_frame(mel, 7), mel[:, 22:38])
    last = mel_window_for_frame(mel, 24)  # starts at 76: 5 real frames, then silence
    assert last.shape == (80, 16)
    np.testing.assert_array_equal(last[:, :5], mel[:, 76:81])
    assert np.all(last[:, 5:] == SILENCE)
    np.testing.assert_array_equal(mel_windows(mel, [0, 7]), np.stack([mel[:, 0:16], mel[:, 22:38]]))
    with pytest.raises(ValueError, match="after the audio"):
        mel_window_for_frame(mel, 26)
    with pytest.raises(ValueError, match=">= 0"):
        mel_window_for_frame(mel, -1)


def test_per_frame_features_shape_and_padding():
    wave = tone(440.0, 2.0)
    feats = per_frame_features(wave, SR)
    assert feats.shape == (50, 64) and feats.dtype == np.float32
    assert n_video_frames(len(wave)) == 50
    longer = per_frame_features(wave, SR, n_frames=60)
    np.testing.assert_array_equal(longer[:50], feats)
    assert np.all(longer[-1] == SILENCE)  # 2.38 s +- 0.1 s lies wholly after the audio
    assert per_frame_features(wave, SR, n_frames=10).shape == (10, 64)
    assert per_frame_features(wave, SR, time_bins=2, mel_bands=40).shape == (50, 80)


def test_per_frame_features_follow_the_audio():
    # A tone that starts at 1 s: frames well before are silent, frames well after are loud.
    wave = np.concatenate([np.zeros(SR, np.float32), tone(1000.0, 1.0)])
    energy = per_frame_features(wave, SR).max(axis=1)
    assert np.all(energy[:20] == SILENCE)
    assert np.all(energy[30:] > energy[0] + 1.0)


def test_bad_input_is_rejected_with_a_clear_error():
    wave = tone(440.0, 0.5)
    with pytest.raises(ValueError, match="resample"):
        per_frame_features(wave, sr=44100)
    with pytest.raises(ValueError, match="sample rate"):
        log_mel(wave, sr=0)
    with pytest.raises(ValueError, match="fmax"):
        log_mel(wave, sr=8000)  # fmax 7600 > Nyquist
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.stack([wave, wave], axis=1))
    with pytest.raises(ValueError, match="too short"):
        log_mel(wave[:100])
    with pytest.raises(ValueError, match="NaN"):
        log_mel(np.full(1000, np.nan, np.float32))


def test_syncnet_mfcc_matches_python_speech_features():
    # Numbers printed by python_speech_features 0.6's mfcc(int16 audio, 16000), as syncnet_python calls it.
    from etlib.audio.features import syncnet_mfcc

    pcm = np.round(reference_signal() * 32767).astype(np.int16)
    mfcc = syncnet_mfcc(pcm)
    assert mfcc.shape == (13, 49)  # 100 frames a second
    expected = {(0, 0): 21.03663, (0, 20): 20.67089, (1, 5): 12.66838, (3, 10): 12.42578, (7, 25): 14.54894,
                (12, 40): 2.05226, (5, 48): -61.13455}  # fmt: skip
    for (c, f), value in expected.items():
        assert mfcc[c, f] == pytest.approx(value, abs=1e-4), (c, f)
    np.testing.assert_allclose(syncnet_mfcc(pcm.astype(np.float32) / 32768), mfcc, rtol=1e-6, atol=1e-6)
    import python_speech_features  # the parity extra: the package itself, on a longer, noisier signal

    rng = np.random.default_rng(3)
    noisy = np.clip(np.tile(pcm, 3).astype(np.float64) + rng.normal(0, 2000, 3 * len(pcm)), -32768, 32767)
    noisy = noisy.astype(np.int16)
    reference = python_speech_features.mfcc(noisy, 16000).T  # what syncnet_python's evaluate() computes
    # both float64 pipelines; 1e-6 of the largest coefficient leaves only summation order
    np.testing.assert_allclose(syncnet_mfcc(noisy), reference, rtol=0, atol=1e-6 * np.abs(reference).max())
