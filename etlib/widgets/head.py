"""What the live controls render with: a trained head that re-renders fast when only valence/arousal change,
and a worker that renders only the latest of a burst of requests.

* :class:`HeadRenderer` renders training frame ``i`` (its pose, background, action units, own audio) at any
  e = (valence, arousal). e enters the model only in f_E (Eq. 5), after the encoding H_E(mu + Δmu_u), so for
  each frame it keeps :meth:`~etlib.talking.model.EmoTalkingGaussian.prepare_frame`'s parts (f_M and the
  mouth layer over the background, f_F's offsets, H_E) and a slider move costs f_E's MLP, one face
  rasterization and one blend (:meth:`~etlib.talking.model.EmoTalkingGaussian.render_prepared`), with the
  same image as a full render (``tests/test_widgets.py``; speed in ``benchmarks/live_render.py``).
* :class:`LatestOnlyRenderer` runs renders on one thread; a request made while one runs replaces the
  pending one, so a drag never leaves a queue of stale frames.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from etlib.base import check_va

RenderFn = Callable[[float, float, int], np.ndarray]
Request = tuple[float, float, int]


class HeadRenderer:
    """``renderer(valence, arousal, frame_index) -> (H, W, 3) uint8``: training frame ``frame_index`` with
    the emotion condition e of Eq. 5 replaced.

    Args:
        model: a trained :class:`~etlib.talking.model.EmoTalkingGaussian`.
        data: the subject's :class:`~etlib.train.data.SubjectFrames`.
        run_dir: the training run the model came from (needed only for :meth:`EmotionController.speak`).
        size: the side of the rendered image in pixels (default: the preset's resolution). The camera's
            intrinsics are scaled (:meth:`~etlib.gaussians.Camera.scaled`) and the background resized.
        cached_frames: how many frames keep their valence/arousal-independent parts (about 1 MB each at
            8k face Gaussians); the least recently shown one is dropped first.

    Everything renders on the model's device (:attr:`~etlib.talking.model.EmoTalkingGaussian.device`): the cached
    parts stay there, and only the finished image comes back to the CPU.
    """

    def __init__(
        self, model, data, run_dir: str | Path | None = None, size: int | None = None, cached_frames: int = 16
    ) -> None:
        self.model = model.eval()
        self.data = data
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.frame_ids = list(data.train_ids)
        self.size = int(size or data.resolution)
        if self.size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}")
        self.cached_frames = max(1, int(cached_frames))
        self._prepared: OrderedDict[int, object] = OrderedDict()

    @property
    def device(self):
        """The model's device, where every render of this head runs."""
        return self.model.device

    @classmethod
    def from_run(cls, run_dir: str | Path, size: int | None = None, device: str = "auto") -> HeadRenderer:
        """The model after the last completed stage of ``run_dir`` (``etlib.train``) and its subject, on ``device``
        (``"auto"``: CUDA when usable)."""
        from etlib.train import SubjectFrames, load_model

        state_path = Path(run_dir) / "state.json"
        if not state_path.exists():
            raise FileNotFoundError(f"{run_dir} is not a training run (no state.json); train it with notebooks 06-09")
        model = load_model(run_dir, device=device)
        data = SubjectFrames.for_run(run_dir, model.config["audio_frames"], device=model.device)
        return cls(model, data, run_dir, size)

    @property
    def n_frames(self) -> int:
        return len(self.frame_ids)

    def _frame(self, frame_index: int):
        """Camera, condition (at the frame's own e) and background of scrubber frame ``frame_index``."""
        import cv2
        import torch

        if not 0 <= int(frame_index) < self.n_frames:
            raise ValueError(f"frame_index {frame_index} is outside the {self.n_frames} training frames")
        i = self.frame_ids[int(frame_index)]
        device = self.device
        camera = self.data.camera(i).to(device)
        background = self.data.subject.read_bg(i)
        if self.size != camera.width:
            camera = camera.scaled(self.size / camera.width)
            background = cv2.resize(background, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        background = torch.from_numpy(background.astype(np.float32) / 255.0).to(device)
        return camera, self.data.condition(i).to(device), background

    def prepared(self, frame_index: int):
        """The frame's valence/arousal-independent parts (computed once, then kept)."""
        import torch

        key = int(frame_index)
        if key in self._prepared:
            self._prepared.move_to_end(key)
            return self._prepared[key]
        camera, cond, background = self._frame(key)
        with torch.no_grad():
            parts = self.model.prepare_frame(camera, cond, background)
        self._prepared[key] = parts
        while len(self._prepared) > self.cached_frames:
            self._prepared.popitem(last=False)
        return parts

    def __call__(self, valence: float, arousal: float, frame_index: int = 0) -> np.ndarray:
        """(H, W, 3) uint8: the composed frame (Eq. S10) at ``e = (valence, arousal)``, by the fast path."""
        import torch

        from etlib.backends import torch_threads
        from etlib.base import to_uint8

        va = torch.tensor(check_va(valence, arousal), dtype=torch.float32, device=self.device)
        with torch_threads(), torch.no_grad():
            out = self.model.render_prepared(self.prepared(frame_index), va)
            return to_uint8(out.image.clamp(0, 1).cpu().numpy())

    def render_full(self, valence: float, arousal: float, frame_index: int = 0) -> np.ndarray:
        """The same image by the whole model's forward pass (Eqs. 3-5, S9-S10): the reference of the fast path."""
        import torch

        from etlib.backends import torch_threads
        from etlib.base import to_uint8

        camera, cond, background = self._frame(frame_index)
        cond.va = torch.tensor(check_va(valence, arousal), dtype=torch.float32, device=self.device)
        with torch_threads(), torch.no_grad():
            return to_uint8(self.model(camera, cond, background).image.clamp(0, 1).cpu().numpy())


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
