"""Measuring what was built, above training (Sec. 4, S6): each module answers one question.

* :mod:`etlib.evaluation.paper_tables` - the paper's Tables 1-4 (self-reconstruction, cross-domain audio,
  emotion-conditioned, ablations); ``python -m etlib.evaluation``.
* :mod:`etlib.evaluation.emotion_visibility` - do valence/arousal visibly change the targets and the renders?
* :mod:`etlib.evaluation.generator_check` - the emotional face generator on a subject's frames at the 12 S6
  points: judge, lips, seams; ``python -m etlib.evaluation.generator_check``.
* :mod:`etlib.evaluation.generator_demos` - the generators run on a subject's frames for notebooks 03-04 (rows,
  Eq. 8's measures, the tiny g_LEF demo, cloning rows); :mod:`etlib.viz.emotion` draws them.
* :mod:`etlib.evaluation.syncnet_check` - the subject's SyncNet trained offline and its Sync-E/C, loudness gate,
  pitch and the TTS clips; ``python -m etlib.evaluation.syncnet_check``.

A trained run's own test-split metrics (PSNR, SSIM, LMD) live with training, in :mod:`etlib.train.run_metrics`.
"""
