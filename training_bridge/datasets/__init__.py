"""Datasets and labelling: versioned training data, labelled in teams, pre-labelled by models."""

from hub.features import Feature

feature = Feature(
    name="datasets",
    description="Datasets with labels, team labelling and review, auto-labelling and versions.",
    requires=("instances", "quotas", "usage", "workspaces", "jobs"),
    scopes={
        "datasets:read": "See your datasets, your workspaces' and your tasks' datasets, their "
        "samples, statistics and versions.",
        "datasets:write": "Create, change and delete datasets, their labels, samples, versions, "
        "tasks and auto-labelling runs; upload and import samples.",
        "datasets:label": "Annotate samples and accept pre-labels.",
        "datasets:review": "Review the samples of labelling tasks you review.",
    },
    grants={
        "viewer": ["datasets:read"],
        "server": ["datasets:read", "datasets:write", "datasets:label", "datasets:review"],
    },
    audit_events={
        "createDataset": "A dataset was created.",
        "updateDataset": "A dataset's description, workspace or multi-label setting changed.",
        "deleteDataset": "A dataset was deleted with its samples, versions and tasks.",
        "createLabel": "A label was added to a dataset's label set.",
        "updateLabel": "A label was renamed or its colour or key changed.",
        "deleteLabel": "A label was removed from a dataset's label set.",
        "uploadSamples": "Files were uploaded to a dataset as samples.",
        "importSamplesToDataset": "Samples with annotations were imported into a dataset.",
        "updateSamples": "Samples' annotations were written.",
        "deleteSamples": "Samples were deleted from a dataset.",
        "acceptSamples": "Pre-labels of samples were accepted as labels.",
        "publishDatasetVersion": "A dataset version was published.",
        "deleteDatasetVersion": "A dataset version was deleted.",
        "exportDataFromDataset": "A dataset or one of its versions was exported.",
        "createWorkforceTask": "A team labelling task was created.",
        "updateWorkforceTask": "A labelling task's members or description changed.",
        "deleteWorkforceTask": "A labelling task was deleted (its samples released).",
        "reviewSamples": "Samples of a labelling task were accepted or rejected by a reviewer.",
        "startWorkforceSamplingTask": "A sampling check of a labeller's samples was started.",
        "updateWorkforceSamplingTask": "A sampling check ended: the samples were accepted or "
        "rejected.",
        "createAutoLabelingTask": "An auto-labelling run was started.",
        "stopTask": "An auto-labelling run was stopped.",
    },
    tables=["training_bridge.datasets.store"],
    migrations="training_bridge.datasets.migrations",
    openapi="training_bridge.datasets:openapi.yaml",
    handlers=[
        "training_bridge.datasets.api",
        "training_bridge.datasets.versions_api",
        "training_bridge.datasets.tasks_api",
        "training_bridge.datasets.pages",
    ],
    setup="training_bridge.datasets.setup:setup",
    settings="training_bridge.datasets.settings:DatasetSettings",
    forget_user="training_bridge.datasets.store:forget_user",
)
