"""The [workbench.experiments] settings table: limits of searches and TensorBoards."""

from __future__ import annotations

from traitlets import Float, Integer
from traitlets.config import Configurable


class ExperimentSettings(Configurable):
    """Hyperparameter searches and TensorBoards (the [workbench.experiments] table)."""

    poll_seconds = Float(
        1.0,
        help="""Seconds between passes of the search loop: it reads running trials' metrics,
        prunes poor ones, and asks for new trials. Default 1.""",
    ).tag(config=True)
    max_trials = Integer(
        500,
        help="""Most trials one search may plan. Default 500.""",
    ).tag(config=True)
    max_parallel = Integer(
        16,
        help="""Most trials of one search that run at once (quotas may allow fewer).
        Default 16.""",
    ).tag(config=True)
    max_active_searches = Integer(
        10,
        help="""Most searches one user may have running at once. Default 10.""",
    ).tag(config=True)
    max_compare_runs = Integer(
        20,
        help="""Most runs one comparison may hold. Default 20.""",
    ).tag(config=True)
    max_tensorboard_runs = Integer(
        20,
        help="""Most runs one TensorBoard may show. Default 20.""",
    ).tag(config=True)
    max_running_tensorboards = Integer(
        5,
        help="""Most TensorBoards one user may have running at once. Default 5.""",
    ).tag(config=True)
