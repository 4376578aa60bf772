"""Densification and pruning (3DGS's clone / split / prune / opacity reset) via gsplat's strategy.

``gsplat.strategy.DefaultStrategy`` is pure PyTorch; it needs, per step, ``means2d`` with its gradient
(C,N,2), ``radii`` (C,N,2), ``width``, ``height``, ``n_cameras`` and ``gaussian_ids`` (None when not
packed). Both rasterizer backends return exactly that in ``RenderOutput.meta``.
"""

from __future__ import annotations

from typing import Any

import torch

from etlib.gaussians.model import GaussianSet


class Densifier:
    """Wire a :class:`GaussianSet` and its per-parameter optimizers into ``DefaultStrategy``.

    Usage::

        optimizers = gaussians.make_optimizers()
        densifier = Densifier(gaussians, optimizers, refine_start_iter=100, refine_every=100)
        for step in range(steps):
            out = gaussians.render(camera)
            densifier.step_pre_backward(step, out.meta)
            loss.backward()
            for opt in optimizers.values(): opt.step(); opt.zero_grad(set_to_none=True)
            densifier.step_post_backward(step, out.meta)

    ``step_post_backward`` must run after the optimizer step (the strategy swaps parameters and their
    Adam states). Keyword arguments configure ``DefaultStrategy`` (``grow_grad2d``, ``prune_opa``,
    ``refine_every``, ``reset_every`` ...). gsplat 1.5.3 never fires its periodic opacity reset (an
    operator-precedence slip: ``step % reset_every == 0 & step > 0``); this wrapper performs it.
    """

    def __init__(
        self,
        gaussians: GaussianSet,
        optimizers: dict[str, torch.optim.Optimizer],
        *,
        scene_scale: float = 1.0,
        **strategy_kwargs: Any,
    ) -> None:
        from gsplat.strategy import DefaultStrategy  # imported here: gsplat loads slowly

        self.gaussians = gaussians
        self.optimizers = optimizers
        self.strategy = DefaultStrategy(**strategy_kwargs)
        self.strategy.check_sanity(gaussians.params, optimizers)
        self.state = self.strategy.initialize_state(scene_scale=scene_scale)

    def step_pre_backward(self, step: int, meta: dict[str, Any]) -> None:
        self.strategy.step_pre_backward(self.gaussians.params, self.optimizers, self.state, step, meta)

    def step_post_backward(self, step: int, meta: dict[str, Any]) -> None:
        from gsplat.strategy.ops import reset_opa

        s = self.strategy
        self.strategy.step_post_backward(self.gaussians.params, self.optimizers, self.state, step, meta)
        if 0 < step < s.refine_stop_iter and step % s.reset_every == 0:
            reset_opa(self.gaussians.params, self.optimizers, self.state, value=s.prune_opa * 2.0)
