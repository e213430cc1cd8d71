"""Imports flow one way: no folder imports from a folder above it, and hub/ names no feature."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# lowest first; a module may import its own layer and those below it
LAYERS = [
    ("client/workbench",),  # the platform's client: imports nothing of the platform
    ("images", "kernels"),
    ("spawner",),
    ("hub",),
    ("features",),
    ("ssh_gateway",),
    ("training_bridge", "inference_bridge"),
    ("gallery",),  # snapshots models and datasets of both bridges
    ("deploy",),  # the Kubernetes bundle: renders every component's manifests
]
# entry points may load what is above them: the CLI (`workbench kubernetes render` loads the
# bundle lazily), and the hub image's configuration file, which JupyterHub runs in the image
ENTRY_POINTS = {"hub/cli.py": {"deploy"}, "images/hub/jupyterhub_config.py": {"hub"}}
PACKAGES = {Path(folder).name: level for level, folders in enumerate(LAYERS) for folder in folders}
# the panel's server extension runs inside instances: it may use the client only
INSTANCE_SIDE = [ROOT / "labextensions/workbench/workbench_lab", ROOT / "images/base"]


def modules(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        if "node_modules" not in path.parts and "__pycache__" not in path.parts:
            yield path


def imported(path: Path, root: Path) -> set[str]:
    """Top-level names of what a module imports (relative imports: its own package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = path.relative_to(root).parts[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module.split(".")[0] if node.level == 0 else own)
    return names


def upward_imports(root: Path) -> list[str]:
    """Every import under root from a folder to one above it."""
    problems = []
    for level, folders in enumerate(LAYERS):
        for folder in folders:
            if not (root / folder).is_dir():
                continue
            for path in modules(root / folder):
                allowed = ENTRY_POINTS.get(path.relative_to(root).as_posix(), set())
                for name in imported(path, root) - allowed:
                    target = PACKAGES.get(name)
                    if target is not None and target > level:
                        problems.append(f"{path.relative_to(root)} imports {name}, a higher layer")
    return problems


def test_no_folder_imports_a_folder_above_it():
    problems = upward_imports(ROOT)
    assert not problems, "\n".join(problems)


def test_instance_side_code_uses_only_the_client():
    problems = []
    for folder in INSTANCE_SIDE:
        for path in modules(folder):
            platform = imported(path, ROOT) & set(PACKAGES)
            for name in platform - {"workbench", folder.relative_to(ROOT).parts[0]}:
                problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not problems, "\n".join(problems)


def test_an_upward_import_is_reported(tmp_path):
    """The check itself: spawner/ importing hub/ (even inside a function) is reported, and
    hub/ importing spawner/ is not."""
    (tmp_path / "spawner").mkdir()
    (tmp_path / "spawner" / "bad.py").write_text("def f():\n    from hub import settings\n")
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "fine.py").write_text("from spawner import options\n")
    assert upward_imports(tmp_path) == ["spawner/bad.py imports hub, a higher layer"]


def test_tests_mirror_the_source_tree():
    """Each test module sits in the folder of what it tests (tests/<folder>/...), beside the
    cross-cutting security suite and the client's own tests."""
    tests = ROOT / "tests"
    assert not sorted(p.name for p in tests.glob("test_*.py")), "test modules at tests/ itself"
    for folder in sorted(p for p in tests.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        rel = folder.relative_to(tests)
        if rel.parts[0] in ("security", "client"):
            continue
        assert (ROOT / rel).is_dir(), f"tests/{rel} mirrors no source folder"
