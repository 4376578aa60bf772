"""Live valence/arousal control of a trained head (notebook 11).

* :mod:`~etlib.widgets.head`: the renderer (a fast path when only valence/arousal change) and the worker
  that renders only the latest request;
* :mod:`~etlib.widgets.pad`: the clickable 2-D valence/arousal pad (anywidget);
* :mod:`~etlib.widgets.controller`: the whole UI (pad, sliders, S6 points, scrubber, live head, a typed
  sentence spoken along emotion keyframes);
* :mod:`~etlib.widgets.figures`: static figures of what the controls show, for executed notebooks.

    ctrl = EmotionController.from_run("outputs/run")
    ctrl.widget()
"""

from etlib.widgets.controller import (
    DEFAULT_KEYFRAMES,
    DEFAULT_SENTENCE,
    EmotionController,
    coalescing_check,
    format_keyframes,
    png_bytes,
)
from etlib.widgets.figures import (
    mean_abs_change,
    show_keyframe_video,
    show_scrubber_strip,
    show_slider_sweep,
    show_va_plane,
)
from etlib.widgets.head import HeadRenderer, LatestOnlyRenderer

__all__ = [
    "DEFAULT_KEYFRAMES",
    "DEFAULT_SENTENCE",
    "EmotionController",
    "HeadRenderer",
    "LatestOnlyRenderer",
    "coalescing_check",
    "format_keyframes",
    "mean_abs_change",
    "png_bytes",
    "show_keyframe_video",
    "show_scrubber_strip",
    "show_slider_sweep",
    "show_va_plane",
]
