"""Console scripts: each command-line tool under a name on the PATH once etlib is installed (``pip install -e .``).

    etlib-preprocess VIDEO OUTDIR --preset quick      # = python -m etlib.preprocess
    etlib-train --subject OUTDIR --out RUN            # = python -m etlib.train
    etlib-render --run RUN --text "Hello." --va circle --out head.mp4
    etlib-evaluate --subject OUTDIR --run RUN --out EVAL

Every one runs its module's ``main`` through :func:`etlib.base.run_main`, exactly as ``python -m`` does: a refusal
is one line on stderr and exit status 2, ``--debug`` (or ``ETLIB_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

from etlib.base import run_main


def preprocess() -> int:
    from etlib.preprocess.__main__ import main

    return run_main(main)


def train() -> int:
    from etlib.train.__main__ import main

    return run_main(main)


def render() -> int:
    from etlib.render import main

    return run_main(main)


def evaluate() -> int:
    from etlib.evaluation.paper_tables import main

    return run_main(main)


def syncnet_check() -> int:
    from etlib.evaluation.syncnet_check import main

    return run_main(main)


def generator_check() -> int:
    from etlib.evaluation.generator_check import main

    return run_main(main)


def weights() -> int:
    from etlib.weights import main

    return run_main(main)


def backends() -> int:
    from etlib.backends import main

    return run_main(main)


def course() -> int:
    from etlib.course import main

    return run_main(main)
