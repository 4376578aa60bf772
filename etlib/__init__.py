"""etlib: the EmoTalkingGaussian course library.

Modules follow the paper (Cha et al., *EmoTalkingGaussian: Continuous Emotion-conditioned Talking
Head Synthesis*) and keep a one-way dependency graph::

    config, weights, backends -> io -> preprocess -> gaussians / encoders -> talking -> train
    -> metrics / evaluate / render -> widgets / notebooks

Every GPU- or weights-only component has a CPU/offline counterpart behind the same interface;
``python -m etlib.backends`` says which one runs.
"""

__version__ = "0.1.0"
