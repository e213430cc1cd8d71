"""Images: saving running instances as images, sharing, pushing and pulling them."""

from hub.features import Feature

feature = Feature(
    name="images",
    description="Saved images: save an instance, share, push to and pull from a registry.",
    scopes={
        "images:read": "See preset, own and shared images.",
        "images:save": "Save a running instance as an image.",
        "images:manage": "Share, push, pull and delete own saved images.",
    },
    grants={"viewer": ["images:read"], "server": ["images:read", "images:save"]},
    audit_events={
        "saveImage": "A running instance was saved as an image.",
        "deleteImage": "A saved image was deleted.",
        "shareImage": "A saved image's shares changed.",
        "pushImage": "A saved image was pushed to the registry.",
        "pullImage": "An image was pulled from the registry as a saved image.",
    },
    tables=["features.images.store"],
    migrations="features.images.migrations",
    openapi="features.images:openapi.yaml",
    handlers=["features.images.api"],
    setup="features.images.setup:setup",
    hub_config="features.images.hub_config:hub_config",
    forget_user="features.images.store:forget_user",
)
