"""The instance policy's settings: one declaration for the settings file and the spawners."""

from __future__ import annotations

from traitlets import Float, HasTraits, Integer, List, Unicode


class InstancePolicySettings(HasTraits):
    """What instances may be made of: catalog, flavors, storage and auto-stop bounds.

    Declared once here and inherited by hub.settings.WorkbenchSettings (the [workbench]
    table of workbench.toml, same names) and by both spawners (c.WorkbenchDockerSpawner.*,
    c.WorkbenchKubeSpawner.*), which jupyterhub_config.py sets from the settings file.
    """

    image_registry = Unicode(
        "localhost/",
        help="""Registry prefix of the catalog's images (the "{registry}" of catalog.yaml).
        Default "localhost/": images built on this machine. Example: "registry.example.com/".""",
    ).tag(config=True)
    catalog_path = Unicode(
        "",
        help="""Image catalog file (YAML). Default "": the catalog shipped in images/. In the
        settings file a relative path is taken from the file's folder. Example:
        "/etc/ai-workbench/catalog.yaml".""",
    ).tag(config=True)
    flavors_path = Unicode(
        "",
        help="""Flavors file (YAML). Default "": the flavors shipped in spawner/. In the
        settings file a relative path is taken from the file's folder. Example:
        "/etc/ai-workbench/flavors.yaml".""",
    ).tag(config=True)
    default_image = Unicode(
        "python",
        help="""Catalog name of the image a new instance gets when none is asked for.
        Default "python".""",
    ).tag(config=True)
    default_flavor = Unicode(
        "cpu.small",
        help="""Flavor a new instance gets when none is asked for. Default "cpu.small".""",
    ).tag(config=True)
    allowed_flavors = List(
        Unicode(),
        help="""Flavor names users may pick; empty (the default) allows every flavor.
        Example: ["cpu.small", "cpu.medium"].""",
    ).tag(config=True)
    storage_min_gib = Integer(
        1, help="Smallest storage an instance may ask for, GiB. Default 1."
    ).tag(config=True)
    storage_max_gib = Integer(
        100, help="Largest storage an instance may ask for, GiB. Default 100."
    ).tag(config=True)
    storage_default_gib = Integer(
        10, help="Storage an instance gets when none is asked for, GiB. Default 10."
    ).tag(config=True)
    work_dir = Unicode(
        "/home/jovyan/work",
        help="""Where an instance's persistent storage is mounted; JupyterLab opens there.
        Default "/home/jovyan/work".""",
    ).tag(config=True)
    idle_stop_default_minutes = Integer(
        60,
        help="""Minutes without activity after which an instance stops, unless its owner
        sets otherwise (0: never). Default 60.""",
    ).tag(config=True)
    idle_stop_min_minutes = Float(
        1,
        help="""Shortest idle timeout users may set, minutes (fractions allowed).
        Default 1.""",
    ).tag(config=True)
    idle_stop_max_minutes = Integer(
        7 * 24 * 60,
        help="Longest idle timeout users may set, minutes. Default 10080 (a week).",
    ).tag(config=True)
    max_runtime_max_hours = Float(
        7 * 24,
        help="""Longest fixed run time ("stop after N hours, whatever happens") users may
        set, hours. Default 168 (a week).""",
    ).tag(config=True)

    def policy_settings(self) -> dict:
        """These settings' values, by name (spawner.options.make_policy takes them)."""
        return {name: getattr(self, name) for name in InstancePolicySettings.class_trait_names()}
