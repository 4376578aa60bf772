"""Interactive valence/arousal control of a trained head (notebook 11), with plain ipywidgets.

The emotion branch is conditioned on a continuous e = (valence, arousal) (Sec. 3.2, Eq. 5), so any point of
the square [-1, 1]^2 can be rendered, not only the 12 points of Sec. S6. :class:`EmotionController` holds a
head renderer and keeps a slider responsive: while a render runs, newer requests replace the pending one, so
dragging a slider never builds a queue of stale frames (:class:`LatestOnlyRenderer`).

    ctrl = EmotionController.from_run("outputs/run")
    ctrl.widget()                       # sliders, S6 presets, frame scrubber, live head, sentence -> video
    image = ctrl.render(0.74, 0.31, 0)  # (H, W, 3) uint8, synchronous
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from etlib.config import S6_POINTS

RenderFn = Callable[[float, float, int], np.ndarray]
Request = tuple[float, float, int]


def _check_va(valence: float, arousal: float) -> tuple[float, float]:
    v, a = float(valence), float(arousal)
    if not (np.isfinite(v) and np.isfinite(a)) or abs(v) > 1 or abs(a) > 1:
        raise ValueError(f"valence and arousal must lie in [-1, 1] (Sec. 3.2); got ({valence}, {arousal})")
    return v, a


# --------------------------------------------------------------------------------------------------
# The head renderer
# --------------------------------------------------------------------------------------------------


class HeadRenderer:
    """Renders training frame ``frame_index`` (its pose, background, action units and own audio) with the
    emotion condition e = (valence, arousal) of Eq. 5 replaced.

    Args:
        model: a trained :class:`~etlib.talking.model.EmoTalkingGaussian`.
        data: the subject's :class:`~etlib.train.data.SubjectFrames`.
        run_dir: the training run the model came from (needed only for :meth:`EmotionController.speak`).
    """

    def __init__(self, model, data, run_dir: str | Path | None = None) -> None:
        self.model = model.eval()
        self.data = data
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.frame_ids = list(data.train_ids)

    @classmethod
    def from_run(cls, run_dir: str | Path) -> HeadRenderer:
        """The model after the last completed stage of ``run_dir`` (``etlib.train``) and its subject."""
        from etlib.train import SubjectFrames, load_model

        state_path = Path(run_dir) / "state.json"
        if not state_path.exists():
            raise FileNotFoundError(f"{run_dir} is not a training run (no state.json); train it with notebooks 06-09")
        model = load_model(run_dir)
        return cls(model, SubjectFrames.for_run(run_dir, model.config["audio_frames"]), run_dir)

    @property
    def n_frames(self) -> int:
        return len(self.frame_ids)

    def __call__(self, valence: float, arousal: float, frame_index: int = 0) -> np.ndarray:
        """(H, W, 3) uint8: the composed frame (Eq. S10) for ``e = (valence, arousal)``."""

        from etlib.backends import torch_threads
        from etlib.base import to_uint8
        from etlib.train.run_metrics import render_frame  # the one-frame render every driver uses

        v, a = _check_va(valence, arousal)
        if not 0 <= int(frame_index) < self.n_frames:
            raise ValueError(f"frame_index {frame_index} is outside the {self.n_frames} training frames")
        i = self.frame_ids[int(frame_index)]
        cond = self.data.condition(i, va=np.array([v, a], np.float32))
        with torch_threads():
            return to_uint8(render_frame(self.model, self.data, i, cond))


# --------------------------------------------------------------------------------------------------
# Coalescing: only the latest request is rendered next
# --------------------------------------------------------------------------------------------------


class LatestOnlyRenderer:
    """Runs ``render_fn`` on one background thread. A request made while a render is running replaces the
    pending one (it is not queued), so after a burst of slider events exactly one more render happens: the
    latest. ``on_result(request, image)`` is called on the worker thread after each render.
    """

    def __init__(
        self,
        render_fn: RenderFn,
        on_result: Callable[[Request, np.ndarray], None] | None = None,
        on_error: Callable[[Request, BaseException], None] | None = None,
    ) -> None:
        self.render_fn = render_fn
        self.on_result = on_result
        self.on_error = on_error
        self.rendered: list[Request] = []  # in order, for inspection and tests
        self.superseded = 0  # requests replaced before they were rendered
        self._pending: Request | None = None
        self._busy = False
        self._cond = threading.Condition()

    def submit(self, valence: float, arousal: float, frame_index: int) -> None:
        """Ask for a render; returns at once."""
        request = (float(valence), float(arousal), int(frame_index))
        with self._cond:
            if self._pending is not None:
                self.superseded += 1
            self._pending = request
            if not self._busy:
                self._busy = True
                threading.Thread(target=self._work, daemon=True, name="etlib-widget-render").start()

    def _work(self) -> None:
        while True:
            with self._cond:
                request, self._pending = self._pending, None
                if request is None:
                    self._busy = False
                    self._cond.notify_all()
                    return
            try:
                image = self.render_fn(*request)
            except BaseException as exc:  # keep the worker alive; the UI shows the error
                if self.on_error is not None:
                    self.on_error(request, exc)
                continue
            with self._cond:
                self.rendered.append(request)
            if self.on_result is not None:
                self.on_result(request, image)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until nothing is running or pending; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout)

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy


# --------------------------------------------------------------------------------------------------
# The controller and its ipywidgets UI
# --------------------------------------------------------------------------------------------------


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an (H, W, 3) uint8 image (for ``ipywidgets.Image``)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} as PNG")
    return buf.tobytes()


def pad_png(valence: float, arousal: float, points: Sequence[tuple[float, float, str]] = S6_POINTS) -> bytes:
    """A small picture of the valence/arousal plane: the S6 points with their labels, the circle of radius
    0.8 swept in the supplementary video, and the current point in red."""
    from matplotlib.figure import Figure  # no pyplot: leaves the notebook's backend alone

    fig = Figure(figsize=(3.1, 2.6), dpi=80)
    ax = fig.add_axes((0.14, 0.15, 0.68, 0.8))  # a right margin for the labels of the right-hand points
    t = np.linspace(0, 2 * np.pi, 121)
    for r in (0.5, 0.8):
        ax.plot(r * np.cos(t), r * np.sin(t), color="0.8", lw=0.8)
    ax.axhline(0, color="0.85", lw=0.6)
    ax.axvline(0, color="0.85", lw=0.6)
    for v, a, label in points:
        ax.plot(v, a, "o", color="tab:blue", ms=3)
        inner = np.hypot(v, a) < 0.65  # inner labels below their point, clear of the outer ones
        ax.annotate(label, (v, a), fontsize=6, xytext=(2, -8 if inner else 2), textcoords="offset points")
    ax.plot(valence, arousal, "o", color="tab:red", ms=7)
    ax.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal")
    ax.set_xlabel("valence", fontsize=7, labelpad=1)
    ax.set_ylabel("arousal", fontsize=7, labelpad=1)
    ax.set(xticks=(-1, 0, 1), yticks=(-1, 0, 1))
    ax.tick_params(labelsize=6, pad=1)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


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
    def from_run(cls, run_dir: str | Path) -> EmotionController:
        return cls(HeadRenderer.from_run(run_dir))

    # -- rendering --------------------------------------------------------------------------------
    def render(self, valence: float, arousal: float, frame_index: int = 0) -> np.ndarray:
        """Render now (synchronous): the head at e = (valence, arousal) on scrubber frame ``frame_index``."""
        _check_va(valence, arousal)
        if not 0 <= int(frame_index) < self.n_frames:
            raise ValueError(f"frame_index {frame_index} is outside 0..{self.n_frames - 1}")
        return self._timed_render(valence, arousal, int(frame_index))

    def request(self, valence: float, arousal: float, frame_index: int = 0) -> None:
        """Render soon, on the worker thread; a newer request replaces this one if it has not started."""
        _check_va(valence, arousal)
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
        parse_va(keyframes)  # a clear error before the slow part
        return render_video(run_dir, out, text=text, va=keyframes, progress=progress)

    # -- the UI -------------------------------------------------------------------------------------
    def widget(self, video_path: str | Path = "emotion_keyframes.mp4", frame_index: int = 0):
        """The ipywidgets UI: valence/arousal sliders, a Dropdown of the 12 S6 points, a picture of the
        valence/arousal plane, a frame/audio scrubber, the live head, and sentence + keyframes -> video."""
        import ipywidgets as W

        style, wide = {"description_width": "70px"}, W.Layout(width="360px")
        valence = W.FloatSlider(0.0, min=-1, max=1, step=0.01, description="valence", style=style, layout=wide)
        arousal = W.FloatSlider(0.0, min=-1, max=1, step=0.01, description="arousal", style=style, layout=wide)
        custom = ()  # the menu's value while the sliders are off the 12 points
        preset = W.Dropdown(
            options=[("(custom)", custom)] + [(f"{label} ({v:+.2f}, {a:+.2f})", (v, a)) for v, a, label in S6_POINTS],
            value=custom,
            description="S6 point",
            style=style,
        )
        frame = W.IntSlider(
            int(frame_index), min=0, max=self.n_frames - 1, description="frame", style=style, layout=wide
        )
        pad = W.Image(value=pad_png(0.0, 0.0), format="png", width=208)
        head = W.Image(format="png", width=256)
        status = W.Label()
        for w in (valence, arousal, frame):
            w.add_class("etlib-" + w.description)
        head.add_class("etlib-head")

        applying: list[bool] = []  # non-empty while a chosen S6 point is copied into the sliders

        def changed(_=None) -> None:
            if not applying and preset.value != custom and preset.value != (valence.value, arousal.value):
                preset.value = custom  # the sliders left the chosen S6 point
            self.request(valence.value, arousal.value, frame.value)

        def chose(change) -> None:
            if change["new"] != custom:  # each assignment requests a render; coalescing drops the first
                applying.append(True)
                try:
                    valence.value, arousal.value = change["new"]
                finally:
                    applying.pop()

        def show(request: Request, image: np.ndarray) -> None:  # on the worker thread, so the pad coalesces too
            head.value = png_bytes(image)
            pad.value = pad_png(request[0], request[1])
            ms = 1000 * self.seconds_per_render[-1]
            status.value = (
                f"e = ({request[0]:+.2f}, {request[1]:+.2f}), frame {request[2]}: {ms:.0f} ms; "
                f"{len(self.worker.rendered)} rendered, {self.worker.superseded} superseded"
            )

        valence.observe(changed, "value")
        arousal.observe(changed, "value")
        frame.observe(changed, "value")
        preset.observe(chose, "value")
        self.on_frame(show)
        self.on_error(lambda request, message: setattr(status, "value", f"render failed for {request}: {message}"))
        changed()

        sentence = W.Text("We can meet at the cafe tomorrow.", description="sentence", style=style)
        keys = W.Text("0:0.74,0.31;2:-0.74,-0.31", description="keyframes", style=style)
        speak = W.Button(description="speak", icon="play")
        video_box = W.Output()

        def clicked(_) -> None:
            speak.disabled = True
            video_box.clear_output()
            try:
                path = self.speak(sentence.value, keys.value, video_path)
                with video_box:
                    from IPython.display import display

                    display(W.Video.from_file(str(path), width=256, autoplay=False))
            except (ValueError, FileNotFoundError) as exc:
                with video_box:
                    print(f"cannot render: {exc}")
            finally:
                speak.disabled = False

        speak.on_click(clicked)
        controls = W.VBox([valence, arousal, preset, frame, status])
        live = W.HBox([W.VBox([controls, pad]), head])
        talk = W.VBox([W.HTML("<b>emotion keyframes over a typed sentence</b> (t:v,a; seconds)"), sentence, keys])
        return W.VBox([live, W.HBox([talk, speak]), video_box])


# --------------------------------------------------------------------------------------------------
# Static figures (widget state is lost in an executed notebook)
# --------------------------------------------------------------------------------------------------


def show_va_plane(
    render_fn: RenderFn, frame_index: int = 0, points: Sequence[tuple[float, float, str]] = S6_POINTS, size=7.0
):
    """The head rendered at each point, placed where the point lies on the valence/arousal plane (what the
    2-D pad shows live); the neutral centre in the middle."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(size, size))
    axis = fig.add_axes((0.06, 0.06, 0.9, 0.9))
    axis.set(xlim=(-1.15, 1.15), ylim=(-1.15, 1.15), aspect="equal", xlabel="valence", ylabel="arousal")
    t = np.linspace(0, 2 * np.pi, 181)
    axis.plot(0.8 * np.cos(t), 0.8 * np.sin(t), color="0.85", lw=1)
    tile = 0.11  # half width of a thumbnail, in valence units
    for v, a, label in [(0.0, 0.0, "neutral"), *points]:
        image = render_fn(v, a, frame_index)
        axis.imshow(image, extent=(v - tile, v + tile, a - tile, a + tile), zorder=2)
        axis.text(v, a - tile - 0.03, f"{label}\n({v:+.2f}, {a:+.2f})", ha="center", va="top", fontsize=6)
    return fig


def show_slider_sweep(
    render_fn: RenderFn, values: Sequence[float] = (-1, -0.5, 0, 0.5, 1), frame_index: int = 0, difference=True
):
    """The head as the valence slider moves (arousal 0) and as the arousal slider moves (valence 0); under
    each render, its absolute difference to the neutral render, all scaled by one gain so that the largest
    difference of the sweep is white (the titles give the mean, in grey levels)."""
    import matplotlib.pyplot as plt

    neutral = render_fn(0.0, 0.0, frame_index).astype(np.float32)
    sweeps = {"valence": [(x, 0.0) for x in values], "arousal": [(0.0, x) for x in values]}
    images = {name: [render_fn(v, a, frame_index) for v, a in vas] for name, vas in sweeps.items()}
    diffs = {name: [np.abs(im.astype(np.float32) - neutral) for im in ims] for name, ims in images.items()}
    gain = 255.0 / max(1.0, max(float(d.max()) for ds in diffs.values() for d in ds))
    n_rows = 4 if difference else 2
    fig, axes = plt.subplots(n_rows, len(values), figsize=(1.6 * len(values), 1.7 * n_rows), squeeze=False)
    for r, name in enumerate(sweeps):
        row = r * (n_rows // 2)
        for c, x in enumerate(values):
            axes[row, c].imshow(images[name][c])
            axes[row, c].set_title(f"{name} {x:+.2f}", fontsize=8)
            if difference:
                d = diffs[name][c]
                axes[row + 1, c].imshow(np.clip(gain * d, 0, 255).astype(np.uint8))
                axes[row + 1, c].set_title(f"|diff| {d.mean():.2g} (x{gain:.0f})", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


def show_scrubber_strip(render_fn: RenderFn, frames: Sequence[int], va: tuple[float, float] = (0.0, 0.0)):
    """What the frame/audio scrubber shows: a few frames (pose, background and own audio) at a fixed e."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(frames), figsize=(1.7 * len(frames), 2.0), squeeze=False)
    for ax, i in zip(axes[0], frames):
        ax.imshow(render_fn(va[0], va[1], int(i)))
        ax.set_title(f"frame {i}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def mean_abs_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference of two uint8 images, in grey levels (0-255)."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


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


def show_keyframe_video(video: str | Path, keyframes: str, n_thumbnails: int = 6, fps: float = 25.0):
    """The "emotion keyframes over a typed sentence" result: the valence/arousal path ``keyframes`` over the
    video's length (top) and frames read back from the written mp4 at evenly spaced times (bottom)."""
    import matplotlib.pyplot as plt

    from etlib.io import read_frames
    from etlib.render import parse_va

    frames = read_frames(video)
    path = parse_va(keyframes)
    times = np.arange(len(frames)) / fps
    va = np.array([path(t) for t in times])
    picks = np.linspace(0, len(frames) - 1, n_thumbnails).round().astype(int)
    fig = plt.figure(figsize=(1.6 * n_thumbnails, 4.2))
    grid = fig.add_gridspec(2, n_thumbnails, height_ratios=(1, 1.2))
    curve = fig.add_subplot(grid[0, :])
    curve.plot(times, va[:, 0], label="valence")
    curve.plot(times, va[:, 1], label="arousal")
    curve.vlines(times[picks], -1, 1, color="0.8", lw=0.8)
    curve.set(ylim=(-1.05, 1.05), xlabel="time (s)", xlim=(0, times[-1] if len(times) > 1 else 1))
    curve.legend(fontsize=7, loc="upper right")
    for k, i in enumerate(picks):
        ax = fig.add_subplot(grid[1, k])
        ax.imshow(frames[i])
        ax.set_title(f"{times[i]:.2f} s  ({va[i, 0]:+.2f}, {va[i, 1]:+.2f})", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return fig
