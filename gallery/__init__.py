"""Gallery: notebooks, images, models and datasets users publish as snapshots and others take."""

from hub.features import Feature

feature = Feature(
    name="gallery",
    description="Share notebook cases, saved images, model versions and dataset versions as "
    "snapshots others browse, star and take.",
    requires=("instances", "quotas", "workspaces", "images", "inference", "datasets"),
    scopes={
        "gallery:read": "Browse the gallery, preview and download the files of the assets you "
        "may see (yours, your workspaces', everyone's).",
        "gallery:write": "Publish, edit and unpublish your assets and their versions; star "
        "and use assets you may see.",
    },
    grants={
        "viewer": ["gallery:read"],
        "server": ["gallery:read", "gallery:write"],
    },
    audit_events={
        "create_content": "An asset was published to the gallery (its version 1).",
        "modify_content": "An asset's title, description, tags or visibility changed.",
        "add_version": "A new version of an asset was published.",
        "delete_content": "An asset was unpublished (with all its versions).",
        "subscription_content": "An asset was used (copied into an instance, or taken as an "
        "image, model or dataset).",
        "like_content": "An asset was starred.",
        "cancel_like_content": "An asset's star was taken back.",
    },
    tables=["gallery.store"],
    migrations="gallery.migrations",
    openapi="gallery:openapi.yaml",
    handlers=["gallery.api", "gallery.pages"],
    setup="gallery.setup:setup",
    settings="gallery.settings:GallerySettings",
    forget_user="gallery.store:forget_user",
)
