"""Interactive valence/arousal control of a trained head (notebook 11).

The emotion branch is conditioned on a continuous e = (valence, arousal) (Sec. 3.2, Eq. 5), so any point of
the disc can be rendered, not only the 12 points of Sec. S6. :class:`EmotionController` holds a head
renderer (:class:`~etlib.widgets.head.HeadRenderer`) and keeps the controls responsive: renders run on a
worker thread that only ever renders the latest request (:class:`~etlib.widgets.head.LatestOnlyRenderer`).

    ctrl = EmotionController.from_run("outputs/run")
    ctrl.widget()                       # pad, sliders, S6 points, frame scrubber, live head, sentence -> video
    image = ctrl.render(0.74, 0.31, 0)  # (H, W, 3) uint8, synchronous
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from etlib.base import check_va
from etlib.config import S6_POINTS
from etlib.widgets.head import HeadRenderer, LatestOnlyRenderer, RenderFn, Request

#: A sentence long enough for an emotion to travel across the pad while it is spoken (8.2 s with espeak-ng).
DEFAULT_SENTENCE = (
    "I got the letter this morning, and I read it twice, slowly. At first I could not believe it, "
    "but now I know that everything in my life is going to change."
)
#: (t seconds, valence, arousal): from neutral through Sad and Surprise to Happy (Sec. S6 points).
DEFAULT_KEYFRAMES = ((0.0, 0.0, 0.0), (2.5, -0.74, -0.31), (5.0, 0.31, 0.74), (8.0, 0.74, 0.31))


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an (H, W, 3) uint8 image (for ``ipywidgets.Image``)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} as PNG")
    return buf.tobytes()


def format_keyframes(keys) -> str:
    """``[(t, v, a), ...]`` as the ``"t:v,a;..."`` text :func:`etlib.render.parse_va` reads."""
    return ";".join(f"{t:g}:{v:.2f},{a:.2f}" for t, v, a in sorted(tuple(k) for k in keys))


class EmotionController:
    """A head renderer with a coalesced render callback and an ipywidgets UI.

    Args:
        renderer: ``renderer(valence, arousal, frame_index) -> (H, W, 3) uint8``; usually a
            :class:`HeadRenderer` (see :meth:`from_run`).
        n_frames: frames the scrubber ranges over (default: ``renderer.n_frames``).
    """

    def __init__(self, renderer: RenderFn, n_frames: int | None = None) -> None:
        self.renderer = renderer
        if n_frames is None and not hasattr(renderer, "n_frames"):
            raise ValueError("give n_frames= (the scrubber's length) for a renderer without an n_frames attribute")
        self.n_frames = int(n_frames if n_frames is not None else renderer.n_frames)
        if self.n_frames < 1:
            raise ValueError("the renderer has no frames to show")
        self.last_image: np.ndarray | None = None
        self.last_request: Request | None = None
        self.seconds_per_render: list[float] = []
        self._listeners: list[Callable[[Request, np.ndarray], None]] = []
        self._error_listeners: list[Callable[[Request, str], None]] = []
        self._model_lock = threading.Lock()  # the worker and synchronous render() take turns on the model
        self.worker = LatestOnlyRenderer(self._timed_render, self._deliver, self._report_error)
        self.errors: list[str] = []

    @classmethod
    def from_run(cls, run_dir: str | Path, size: int | None = None, device: str = "auto") -> EmotionController:
        """A controller for the model of ``run_dir``, rendering ``size`` pixels square (default: the preset's) on
        ``device`` (``"auto"``: CUDA when usable)."""
        return cls(HeadRenderer.from_run(run_dir, size, device=device))

    # -- rendering --------------------------------------------------------------------------------
    def render(self, valence: float, arousal: float, frame_index: int = 0) -> np.ndarray:
        """Render now (synchronous): the head at e = (valence, arousal) on scrubber frame ``frame_index``."""
        check_va(valence, arousal)
        if not 0 <= int(frame_index) < self.n_frames:
            raise ValueError(f"frame_index {frame_index} is outside 0..{self.n_frames - 1}")
        return self._timed_render(valence, arousal, int(frame_index))

    def request(self, valence: float, arousal: float, frame_index: int = 0) -> None:
        """Render soon, on the worker thread; a newer request replaces this one if it has not started."""
        check_va(valence, arousal)
        self.worker.submit(valence, arousal, int(np.clip(frame_index, 0, self.n_frames - 1)))

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until the latest request is rendered."""
        return self.worker.wait(timeout)

    def on_frame(self, callback: Callable[[Request, np.ndarray], None]) -> None:
        """Call ``callback(request, image)`` after every coalesced render."""
        self._listeners.append(callback)

    def on_error(self, callback: Callable[[Request, str], None]) -> None:
        """Call ``callback(request, message)`` when a coalesced render raises (the worker keeps going)."""
        self._error_listeners.append(callback)

    def _timed_render(self, valence: float, arousal: float, frame_index: int) -> np.ndarray:
        with self._model_lock:
            start = time.perf_counter()
            image = np.asarray(self.renderer(valence, arousal, frame_index))
            self.seconds_per_render.append(time.perf_counter() - start)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"the renderer must return (H, W, 3) uint8, got {image.dtype} {image.shape}")
        return image

    def _deliver(self, request: Request, image: np.ndarray) -> None:
        self.last_request, self.last_image = request, image
        for callback in self._listeners:
            callback(request, image)

    def _report_error(self, request: Request, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        self.errors.append(f"{request}: {message}")
        for callback in self._error_listeners:
            callback(request, message)

    # -- sentence + keyframes -> video ---------------------------------------------------------------
    def speak(self, text: str, keyframes: str, out: str | Path, progress: bool = False) -> Path:
        """TTS of ``text`` rendered along the valence/arousal keyframes ``"t0:v,a;t1:v,a"`` (seconds) into an
        mp4 with sound (:func:`etlib.render.render_video`)."""
        from etlib.render import parse_va, render_video

        run_dir = getattr(self.renderer, "run_dir", None)
        if run_dir is None:
            raise ValueError("speak() needs a renderer built from a training run (EmotionController.from_run)")
        if not text.strip():
            raise ValueError("type a sentence to speak")
        path = parse_va(keyframes)  # a clear error before the slow part
        for t in (0.0, 1e6):
            check_va(*path(t))
        device = getattr(self.renderer, "device", "auto")  # the head's own device renders its video too
        return render_video(run_dir, out, text=text, va=keyframes, progress=progress, device=device)

    # -- the UI -------------------------------------------------------------------------------------
    def widget(self, video_path: str | Path = "emotion_keyframes.mp4", frame_index: int = 0):
        """The UI: the 2-D valence/arousal pad (:class:`~etlib.widgets.pad.ValenceArousalPad`) kept in step
        with two sliders and a menu of the 12 S6 points, a frame/audio scrubber, the live head, and a typed
        sentence spoken along emotion keyframes set on the pad."""
        import ipywidgets as W

        from etlib.widgets.pad import ValenceArousalPad

        style, wide = {"description_width": "70px"}, W.Layout(width="340px")
        pad = ValenceArousalPad(size=240)
        valence = W.FloatSlider(0.0, min=-1, max=1, step=0.01, description="valence", style=style, layout=wide)
        arousal = W.FloatSlider(0.0, min=-1, max=1, step=0.01, description="arousal", style=style, layout=wide)
        W.link((pad, "valence"), (valence, "value"))  # one point, three controls: pad, sliders, menu
        W.link((pad, "arousal"), (arousal, "value"))
        custom = ()  # the menu's value while the point is off the 12 S6 points
        preset = W.Dropdown(
            options=[("(custom)", custom)] + [(f"{label} ({v:+.2f}, {a:+.2f})", (v, a)) for v, a, label in S6_POINTS],
            value=custom,
            description="S6 point",
            style=style,
        )
        frame = W.IntSlider(
            int(frame_index), min=0, max=self.n_frames - 1, description="frame", style=style, layout=wide
        )
        # a fixed square box: in an HBox a bare image stretches to the height of the controls beside it
        head = W.Image(format="png", layout=W.Layout(width="256px", height="256px", object_fit="contain"))
        status = W.Label()
        for w in (valence, arousal, frame):
            w.add_class("etlib-" + w.description)
        head.add_class("etlib-head")

        applying: list[bool] = []  # non-empty while a chosen S6 point is copied into the pad

        def changed(_=None) -> None:
            if not applying and preset.value != custom and preset.value != (pad.valence, pad.arousal):
                preset.value = custom  # the point left the chosen S6 point
            self.request(pad.valence, pad.arousal, frame.value)

        def chose(change) -> None:
            if change["new"] != custom:  # each assignment requests a render; coalescing drops the first
                applying.append(True)
                try:
                    pad.valence, pad.arousal = change["new"]
                finally:
                    applying.pop()

        def show(request: Request, image: np.ndarray) -> None:
            head.value = png_bytes(image)
            ms = 1000 * self.seconds_per_render[-1]
            status.value = (
                f"e = ({request[0]:+.2f}, {request[1]:+.2f}), frame {request[2]}: {ms:.0f} ms; "
                f"{len(self.worker.rendered)} rendered, {self.worker.superseded} superseded"
            )

        pad.observe(changed, ["valence", "arousal"])
        frame.observe(changed, "value")
        preset.observe(chose, "value")
        self.on_frame(show)
        self.on_error(lambda request, message: setattr(status, "value", f"render failed for {request}: {message}"))
        changed()

        speaking = self._speaking_panel(pad, video_path, style)
        controls = W.VBox([valence, arousal, preset, frame, status])
        return W.VBox([W.HBox([W.VBox([pad, controls]), head]), speaking])

    def _speaking_panel(self, pad, video_path: str | Path, style: dict):
        """Sentence, keyframes (set by clicking the pad, then "add keyframe"), and the "speak" button."""
        import ipywidgets as W
        from IPython.display import display

        pad.keyframes = [list(k) for k in DEFAULT_KEYFRAMES]
        sentence = W.Textarea(DEFAULT_SENTENCE, description="sentence", style=style, layout=W.Layout(width="600px"))
        keys = W.Text(
            format_keyframes(pad.keyframes), description="keyframes", style=style, layout=W.Layout(width="600px")
        )
        at = W.BoundedFloatText(
            10.0, min=0, max=600, step=0.5, description="at (s)", style=style, layout=W.Layout(width="160px")
        )
        add = W.Button(description="add keyframe", icon="plus", tooltip="the pad's point at this time")
        clear = W.Button(description="clear", icon="trash")
        speak = W.Button(description="speak", icon="play", button_style="primary")
        video_box = W.Output()
        add.add_class("etlib-add-keyframe")
        speak.add_class("etlib-speak")

        def edited(_=None) -> None:  # the text is the truth; the pad draws what it reads
            from etlib.render import parse_keyframes

            try:
                pad.keyframes = parse_keyframes(keys.value)
            except ValueError:
                pass  # half-typed text: keep the last drawing; "speak" reports the error

        def added(_) -> None:
            kept = [k for k in pad.keyframes if abs(k[0] - at.value) > 1e-6]
            keys.value = format_keyframes(kept + [(at.value, pad.valence, pad.arousal)])
            at.value = at.value + 2.5

        def cleared(_) -> None:
            keys.value = ""
            at.value = 0.0

        def clicked(_) -> None:
            speak.disabled = True
            video_box.clear_output()
            try:
                path = self.speak(sentence.value, keys.value, video_path)
                with video_box:
                    from etlib.audio.tts import voice_name

                    display(W.Video.from_file(str(path), width=256, autoplay=False))
                    print(f"{path}: spoken by {voice_name()}")
            except (ValueError, FileNotFoundError, RuntimeError) as exc:
                with video_box:
                    print(f"cannot render: {exc}")
            finally:
                speak.disabled = False

        keys.observe(edited, "value")
        add.on_click(added)
        clear.on_click(cleared)
        speak.on_click(clicked)
        title = W.HTML("<b>emotion keyframes over a typed sentence</b>: click the pad, then <i>add keyframe</i>")
        return W.VBox([title, sentence, keys, W.HBox([at, add, clear, speak]), video_box])


def coalescing_check(controller: EmotionController, n_requests: int = 10, frame_index: int = 0) -> dict[str, Any]:
    """Fire ``n_requests`` slider positions as fast as a drag would, wait, and count what was rendered: with
    coalescing this is 1 (the first) + 1 (the latest) when renders are slower than the burst."""
    before = len(controller.worker.rendered)
    superseded_before = controller.worker.superseded
    values = np.linspace(-0.8, 0.8, n_requests)
    for v in values:
        controller.request(float(v), 0.0, frame_index)
    controller.wait()
    rendered = controller.worker.rendered[before:]
    return {
        "requests": n_requests,
        "rendered": len(rendered),
        "superseded": controller.worker.superseded - superseded_before,
        "last_rendered_is_latest": bool(rendered) and rendered[-1][0] == float(values[-1]),
    }
