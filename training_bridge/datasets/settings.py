"""The [workbench.datasets] settings table: where samples are stored and how much they may be."""

from __future__ import annotations

from traitlets import Float, Integer, Unicode
from traitlets.config import Configurable


class DatasetSettings(Configurable):
    """Storage and limits of datasets (the [workbench.datasets] table of the settings)."""

    store_url = Unicode(
        "",
        help="""Where samples' files are kept, content-addressed (fsspec URL): "" for
        file://<data_dir>/datasets/blobs on this machine, or for example
        "s3://bucket/prefix" (with s3fs installed) on clusters. Published versions are
        always materialized on this machine. Default "" (for example
        "s3://datasets/workbench" on a cluster).""",
    ).tag(config=True)
    max_dataset_gib = Float(
        50.0,
        help="""Most bytes one dataset's files may hold, GiB (each distinct file counted
        once). Default 50.""",
    ).tag(config=True)
    max_user_gib = Float(
        200.0,
        help="""Most bytes all the datasets of one user may hold together, GiB. Default 200.""",
    ).tag(config=True)
    max_upload_mib = Integer(
        1024,
        help="""Largest request body of an upload or an import (one file, or an archive),
        MiB; bigger folders are sent in several archives. Default 1024.""",
    ).tag(config=True)
    max_samples = Integer(
        1_000_000,
        help="""Most samples one dataset may hold. Default 1000000.""",
    ).tag(config=True)
    max_text_kib = Integer(
        64,
        help="""Largest text sample (text and named-entity datasets), KiB of UTF-8. Default 64.""",
    ).tag(config=True)
    max_image_pixels = Integer(
        100_000_000,
        help="""Most pixels (width x height) one image sample may have: larger ones are refused
        before they are decoded. Default 100000000.""",
    ).tag(config=True)
    autolabel_batch_size = Integer(
        16,
        help="""Samples sent to a service in one request of an auto-labelling run.
        Default 16.""",
    ).tag(config=True)
    autolabel_timeout_seconds = Float(
        60.0,
        help="""Seconds an auto-labelling run waits for a service's answer to one request
        before the run fails. Default 60.""",
    ).tag(config=True)
