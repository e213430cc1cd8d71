"""Experiments: hyperparameter searches over job runs, runs compared, TensorBoard in JupyterLab."""

from hub.features import Feature

feature = Feature(
    name="experiments",
    description="Hyperparameter searches whose trials are job runs, run comparison, TensorBoard.",
    requires=("instances", "quotas", "jobs"),
    scopes={
        "experiments:read": "See your and your workspaces' hyperparameter searches, their "
        "trials, comparisons of runs you may see, and your TensorBoards.",
        "experiments:write": "Start, stop and delete hyperparameter searches; open, stop and "
        "delete TensorBoards.",
    },
    grants={
        "viewer": ["experiments:read"],
        "server": ["experiments:read", "experiments:write"],
    },
    audit_events={
        "createHyperparameterSearch": "A hyperparameter search was started.",
        "stopHyperparameterSearch": "A hyperparameter search was stopped (its running trials too).",
        "deleteHyperparameterSearch": "A hyperparameter search was deleted (its job runs stay).",
        "createModelArtsTensorboardJob": "A TensorBoard was opened over runs' event folders.",
        "stopModelArtsTensorboardJob": "A TensorBoard was stopped.",
        "deleteModelArtsTensorboardJob": "A TensorBoard was deleted.",
    },
    tables=["training_bridge.experiments.store"],
    migrations="training_bridge.experiments.migrations",
    openapi="training_bridge.experiments:openapi.yaml",
    handlers=[
        "training_bridge.experiments.api",
        "training_bridge.experiments.compare_api",
        "training_bridge.experiments.tensorboards_api",
        "training_bridge.experiments.pages",
    ],
    setup="training_bridge.experiments.setup:setup",
    settings="training_bridge.experiments.settings:ExperimentSettings",
    forget_user="training_bridge.experiments.store:forget_user",
)
