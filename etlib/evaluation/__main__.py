"""``python -m etlib.evaluation``: the paper's Tables 1-4 (:func:`etlib.evaluation.paper_tables.main`)."""

import sys

from etlib.base import run_main
from etlib.evaluation.paper_tables import main

sys.exit(run_main(main))
