"""The 2-D valence/arousal pad: a Jupyter widget one clicks or drags (anywidget; JupyterLab, Notebook 7, Voilà).

The emotion condition e = (valence, arousal) of Eq. 5 is continuous, so a plane is its natural control: the
pad draws the disc of radius 1, the circles of radius 0.5 and 0.8 that hold the 12 evaluation points of
Sec. S6 (labelled), the keyframes of a sentence, and the current point. Its ``valence`` and ``arousal``
traits are synced with the browser; link them to sliders or observe them like any ipywidget trait::

    pad = ValenceArousalPad()
    pad.observe(lambda change: print(pad.valence, pad.arousal), ["valence", "arousal"])

The drawing and the pointer handling live in ``pad.js`` beside this file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etlib.config import S6_POINTS

try:
    import anywidget
    import traitlets
except ImportError as err:  # the course extra installs both
    raise ImportError(
        "the valence/arousal pad needs anywidget: pip install 'anywidget>=0.9' (or pip install -e '.[course]')"
    ) from err


class ValenceArousalPad(anywidget.AnyWidget):
    """A clickable valence/arousal disc.

    Attributes (synced with the browser):
        valence, arousal: the current point, each in [-1, 1] (Sec. 3.2); other values are refused.
        points: ``[(valence, arousal, label), ...]`` drawn as reference marks (default: the 12 of Sec. S6).
        keyframes: ``[(t_seconds, valence, arousal), ...]`` drawn as a numbered path.
        size: the side of the square canvas in CSS pixels.
    """

    _esm = Path(__file__).with_name("pad.js")
    valence = traitlets.Float(0.0).tag(sync=True)
    arousal = traitlets.Float(0.0).tag(sync=True)
    points = traitlets.List([list(p) for p in S6_POINTS]).tag(sync=True)
    keyframes = traitlets.List([]).tag(sync=True)
    size = traitlets.Int(240).tag(sync=True)

    @traitlets.validate("valence", "arousal")
    def _inside_range(self, proposal) -> float:
        return _unit_range(proposal["trait"].name, proposal["value"])

    @traitlets.validate("keyframes")
    def _valid_keyframes(self, proposal) -> list[list[float]]:
        keys = []
        for key in proposal["value"]:
            t, v, a = (float(x) for x in key)
            if not np.isfinite(t) or t < 0:
                raise traitlets.TraitError(f"a keyframe time must be a finite number of seconds >= 0, got {t}")
            keys.append([t, _unit_range("valence", v), _unit_range("arousal", a)])
        return sorted(keys)


def _unit_range(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or abs(value) > 1:
        raise traitlets.TraitError(f"{name} must be a finite number in [-1, 1] (Sec. 3.2), got {value}")
    return value
