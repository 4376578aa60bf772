"""etlib: the EmoTalkingGaussian course library.

Modules follow the paper (Cha et al., *EmoTalkingGaussian: Continuous Emotion-conditioned Talking
Head Synthesis*) and keep a one-way dependency graph, bottom to top (``tests/test_layering.py`` enforces it,
imports inside functions included)::

    base                                    rates, landmark index sets, atomic writes
    config, weights, backends, io, metrics, losses
    audio, emoface                          perception (audio features, SyncNet, TTS, emotion judges) and g_LEF
    preprocess                              a video -> a subject folder
    gaussians, encoders                     rasterizer, hash grids
    talking                                 the model (Eqs. 3-5, S9-S10)
    train                                   the six stages, a run's own metrics
    viz                                     figures only
    evaluation, render                      Tables 1-4 and checks; videos
    widgets, course                         sliders, the papermill runner

Every GPU- or weights-only component has a CPU/offline counterpart behind the same interface;
``python -m etlib.backends`` says which one runs.
"""

__version__ = "0.1.0"
