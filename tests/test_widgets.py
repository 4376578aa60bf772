"""Notebook 11's controller: coalesced renders (only the latest pending request is rendered next), input
checks, the ipywidgets UI wiring, and the static figures; with fake renderers, so no model is trained."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from etlib.config import S6_POINTS
from etlib.widgets import EmotionController, LatestOnlyRenderer, mean_abs_change, png_bytes


class GatedRenderer:
    """A slow renderer under the test's control: each call blocks until the test releases it."""

    def __init__(self, n_frames: int = 5) -> None:
        self.n_frames = n_frames
        self.calls: list[tuple[float, float, int]] = []
        self.started = threading.Semaphore(0)
        self.release = threading.Semaphore(0)

    def __call__(self, valence: float, arousal: float, frame_index: int) -> np.ndarray:
        self.calls.append((valence, arousal, frame_index))
        self.started.release()
        assert self.release.acquire(timeout=10), "the test never released the render"
        return va_image(valence, arousal, frame_index)


def va_image(valence: float, arousal: float, frame_index: int) -> np.ndarray:
    """A deterministic 8x8 image whose pixels encode e and the frame."""
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = round(127.5 * (valence + 1))
    image[..., 1] = round(127.5 * (arousal + 1))
    image[..., 2] = frame_index
    return image


def test_requests_made_during_a_render_replace_each_other():
    fake = GatedRenderer()
    results = []
    worker = LatestOnlyRenderer(fake, on_result=lambda req, img: results.append((req, img)))
    worker.submit(0.1, 0.0, 0)
    assert fake.started.acquire(timeout=5)  # the first render is running
    for v in (0.2, 0.3, 0.4, 0.5):
        worker.submit(v, -0.5, 1)
    fake.release.release()  # finish the first; the worker must go straight to the latest
    assert fake.started.acquire(timeout=5)
    fake.release.release()
    assert worker.wait(timeout=5)
    assert fake.calls == [(0.1, 0.0, 0), (0.5, -0.5, 1)]
    assert worker.rendered == fake.calls
    assert worker.superseded == 3
    assert [r for r, _ in results] == fake.calls
    np.testing.assert_array_equal(results[-1][1], va_image(0.5, -0.5, 1))
    assert not worker.busy


def test_an_idle_worker_renders_every_request_and_survives_errors():
    seen = []

    def flaky(v, a, i):
        if v < 0:
            raise RuntimeError("boom")
        return va_image(v, a, i)

    errors = []
    worker = LatestOnlyRenderer(flaky, on_result=lambda r, _: seen.append(r), on_error=lambda r, e: errors.append(r))
    for v in (0.1, -0.2, 0.3):
        worker.submit(v, 0.0, 2)
        assert worker.wait(timeout=5)
    assert seen == [(0.1, 0.0, 2), (0.3, 0.0, 2)]
    assert errors == [(-0.2, 0.0, 2)]
    assert worker.superseded == 0


def test_controller_checks_its_inputs():
    ctrl = EmotionController(va_image, n_frames=3)
    np.testing.assert_array_equal(ctrl.render(0.74, 0.31, 2), va_image(0.74, 0.31, 2))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        ctrl.render(1.5, 0.0, 0)
    with pytest.raises(ValueError, match="frame_index"):
        ctrl.render(0.0, 0.0, 3)
    with pytest.raises(ValueError, match="uint8"):
        EmotionController(lambda v, a, i: np.zeros((4, 4)), n_frames=1).render(0, 0, 0)
    with pytest.raises(ValueError, match="training run"):
        ctrl.speak("Hello.", "0:0,0", "x.mp4")
    with pytest.raises(FileNotFoundError, match="state.json"):
        EmotionController.from_run("/nonexistent/run")


def test_controller_delivers_the_latest_frame_to_listeners():
    fake = GatedRenderer()
    ctrl = EmotionController(fake)
    got = []
    ctrl.on_frame(lambda req, img: got.append(req))
    ctrl.request(0.0, 0.0, 0)
    assert fake.started.acquire(timeout=5)
    ctrl.request(0.3, 0.3, 99)  # the frame is clipped to the scrubber's range
    ctrl.request(-0.74, -0.31, 4)
    fake.release.release()
    fake.release.release()
    assert ctrl.wait(timeout=5)
    assert got == [(0.0, 0.0, 0), (-0.74, -0.31, 4)]
    np.testing.assert_array_equal(ctrl.last_image, va_image(-0.74, -0.31, 4))
    assert len(ctrl.seconds_per_render) == 2


def test_the_ui_renders_on_slider_and_preset_changes():
    pytest.importorskip("ipywidgets")
    import cv2

    ctrl = EmotionController(va_image, n_frames=4)
    ui = ctrl.widget()
    assert ctrl.wait(timeout=5)
    widgets = {w.description: w for w in _walk(ui) if getattr(w, "description", None)}
    head = next(w for w in _walk(ui) if "etlib-head" in getattr(w, "_dom_classes", ()))

    def shown() -> np.ndarray:
        return cv2.imdecode(np.frombuffer(head.value, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]

    np.testing.assert_array_equal(shown(), va_image(0.0, 0.0, 0))
    widgets["valence"].value = -0.5
    widgets["frame"].value = 3
    assert ctrl.wait(timeout=5)
    np.testing.assert_array_equal(shown(), va_image(-0.5, 0.0, 3))
    v, a, _ = S6_POINTS[4]
    widgets["S6 point"].value = (v, a)
    assert ctrl.wait(timeout=5)
    assert widgets["S6 point"].value == (v, a)  # copying the point into the sliders keeps it selected
    np.testing.assert_array_equal(shown(), va_image(v, a, 3))
    status = next(w for w in _walk(ui) if type(w).__name__ == "Label")
    assert status.value.startswith(f"e = ({v:+.2f}, {a:+.2f}), frame 3:")
    widgets["arousal"].value = 0.9
    assert widgets["S6 point"].value == () and widgets["S6 point"].label == "(custom)"  # moved off the point

    pad = next(w for w in _walk(ui) if type(w).__name__ == "ValenceArousalPad")
    assert (pad.valence, pad.arousal) == (v, 0.9)  # the sliders move the pad's point
    pad.valence, pad.arousal = 0.2, -0.6  # as a click on the pad does
    assert ctrl.wait(timeout=5)
    assert (widgets["valence"].value, widgets["arousal"].value) == (0.2, -0.6)
    np.testing.assert_array_equal(shown(), va_image(0.2, -0.6, 3))


def test_the_pad_refuses_points_off_the_plane_and_draws_keyframes():
    pytest.importorskip("anywidget")
    import traitlets

    from etlib.widgets.pad import ValenceArousalPad

    pad = ValenceArousalPad()
    for bad in (1.5, -1.01, float("nan"), float("inf")):
        with pytest.raises(traitlets.TraitError, match=r"\[-1, 1\]"):
            pad.valence = bad
    with pytest.raises(traitlets.TraitError, match="arousal"):
        pad.arousal = 2.0
    assert (pad.valence, pad.arousal) == (0.0, 0.0)
    pad.keyframes = [(2.0, 0.1, 0.2), (0, -0.5, 0.5)]
    assert pad.keyframes == [[0.0, -0.5, 0.5], [2.0, 0.1, 0.2]]  # in time order, as the path is drawn
    with pytest.raises(traitlets.TraitError, match="seconds"):
        pad.keyframes = [(-1, 0, 0)]
    assert "export default" in str(pad._esm)  # the module anywidget sends to the browser ships beside pad.py


def test_keyframes_set_on_the_pad_become_the_spoken_path():
    pytest.importorskip("anywidget")
    from etlib.render import parse_va

    ctrl = EmotionController(va_image, n_frames=2)
    ui = ctrl.widget()
    assert ctrl.wait(timeout=5)
    pad = next(w for w in _walk(ui) if type(w).__name__ == "ValenceArousalPad")
    text = next(w for w in _walk(ui) if getattr(w, "description", None) == "keyframes")
    at = next(w for w in _walk(ui) if getattr(w, "description", None) == "at (s)")
    add = next(w for w in _walk(ui) if getattr(w, "description", None) == "add keyframe")
    clear = next(w for w in _walk(ui) if getattr(w, "description", None) == "clear")
    assert pad.keyframes and text.value  # a default path over the default sentence
    clear.click()
    assert text.value == "" and pad.keyframes == [] and at.value == 0
    for v, a in ((0.74, 0.31), (-0.74, -0.31), (0.31, 0.74)):
        pad.valence, pad.arousal = v, a
        add.click()
    assert text.value == "0:0.74,0.31;2.5:-0.74,-0.31;5:0.31,0.74"
    assert pad.keyframes == [[0.0, 0.74, 0.31], [2.5, -0.74, -0.31], [5.0, 0.31, 0.74]]
    path = parse_va(text.value)
    assert path(1.25) == pytest.approx((0.0, 0.0)) and path(9.0) == pytest.approx((0.31, 0.74))
    text.value = "0:0,0;3:0.5,0.5"  # typed by hand: the pad redraws
    assert pad.keyframes == [[0.0, 0.0, 0.0], [3.0, 0.5, 0.5]]


def test_a_failing_render_is_reported_in_the_ui():
    pytest.importorskip("ipywidgets")

    def broken(v, a, i):
        raise RuntimeError("out of memory")

    ctrl = EmotionController(broken, n_frames=2)
    ui = ctrl.widget()
    assert ctrl.wait(timeout=5)
    status = next(w for w in _walk(ui) if type(w).__name__ == "Label")
    assert "render failed" in status.value and "out of memory" in status.value
    assert ctrl.errors and ctrl.last_image is None


def test_png_helpers_round_trip():
    import cv2

    image = va_image(0.2, -0.4, 7)
    decoded = cv2.imdecode(np.frombuffer(png_bytes(image), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(decoded, image)
    assert mean_abs_change(image, image) == 0.0
    assert mean_abs_change(np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 10, np.uint8)) == 10.0
    with pytest.raises(ValueError, match="shape"):
        mean_abs_change(image, image[:4])
    region = np.zeros((2, 2), bool)
    region[0, 0] = True
    brighter = np.zeros((2, 2, 3), np.uint8)
    brighter[0, 0] = 40
    assert mean_abs_change(np.zeros((2, 2, 3), np.uint8), brighter, region) == 40.0  # only the region counts
    assert mean_abs_change(np.zeros((2, 2, 3), np.uint8), brighter) == 10.0
    with pytest.raises(ValueError, match="empty"):
        mean_abs_change(brighter, brighter, np.zeros((2, 2), bool))


def test_static_figures_draw_the_renders():
    from etlib.widgets import show_scrubber_strip, show_slider_sweep, show_va_plane

    calls = []

    def spy(v, a, i):
        calls.append((v, a, i))
        return va_image(v, a, i)

    fig = show_va_plane(spy, frame_index=1)
    assert len(calls) == 1 + len(S6_POINTS) and len(fig.axes[0].images) == 1 + len(S6_POINTS)
    calls.clear()
    fig = show_slider_sweep(spy, values=(-1, 0, 1))
    assert (-1, 0.0, 0) in calls and (0.0, 1, 0) in calls
    fig = show_scrubber_strip(spy, [0, 2])
    assert len(fig.axes) == 2


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


@pytest.mark.slow
def test_the_head_renderer_fast_path_equals_a_full_render(trained_smoke_run):
    """Only valence/arousal change: the kept frame parts give the image of the whole forward pass, the image
    every other driver renders (``run_metrics.render_frame``), and at another size the scaled camera's."""
    from etlib.base import to_uint8
    from etlib.train.run_metrics import render_frame
    from etlib.widgets import HeadRenderer

    renderer = HeadRenderer.from_run(trained_smoke_run)
    face = renderer.data.subject.read_mask("face", renderer.frame_ids[1])
    neutral = renderer(0.0, 0.0, 1)
    for v, a in ((0.74, 0.31), (-0.74, -0.31), (0.0, 0.0)):
        fast = renderer(v, a, 1)
        np.testing.assert_array_equal(fast, renderer.render_full(v, a, 1))
        cond = renderer.data.condition(renderer.frame_ids[1], va=np.array([v, a], np.float32))
        np.testing.assert_array_equal(
            fast, to_uint8(render_frame(renderer.model, renderer.data, renderer.frame_ids[1], cond))
        )
    assert mean_abs_change(neutral, renderer(0.74, 0.31, 1), face) > 1.0  # the emotion reaches the fast path
    assert list(renderer._prepared) == [1]  # one frame's parts, computed once
    big = HeadRenderer(renderer.model, renderer.data, size=96)
    np.testing.assert_array_equal(big(0.31, 0.74, 0), big.render_full(0.31, 0.74, 0))
    assert big(0.31, 0.74, 0).shape == (96, 96, 3)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        renderer(float("nan"), 0.0, 0)
