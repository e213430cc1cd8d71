"""The [workbench.gallery] settings table: where snapshots are kept, how much users may publish."""

from __future__ import annotations

from traitlets import Integer, Unicode
from traitlets.config import Configurable

GiB = 1024**3


class GallerySettings(Configurable):
    """Storage and limits of the gallery (the [workbench.gallery] table of the settings)."""

    blob_url = Unicode(
        "",
        help="""Where the files of published assets are kept, content-addressed (fsspec URL):
        "" for file://<data_dir>/gallery/blobs on this machine, or for example
        "s3://workbench/gallery" (with s3fs installed) on clusters. Default "".""",
    ).tag(config=True)
    max_asset_bytes = Integer(
        1 * GiB,
        help="""Most bytes one version of an asset may hold (its files; an image's added
        size). Default 1073741824 (1 GiB); for example 268435456 for 256 MiB.""",
    ).tag(config=True)
    max_user_bytes = Integer(
        5 * GiB,
        help="""Most bytes all the versions a user published may hold together (images count
        their added size). Default 5368709120 (5 GiB).""",
    ).tag(config=True)
    max_versions = Integer(
        50,
        help="""Most versions one asset may have; unpublish the asset and publish it anew
        beyond that. Default 50.""",
    ).tag(config=True)
