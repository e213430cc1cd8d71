"""The `workbench` command: run the platform, build images, manage instances, jobs, models,
services, batch runs, datasets and the gallery."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import sys
from pathlib import Path

from workbench import WorkbenchClient, WorkbenchError
from workbench.resources.batch import parse_inputs
from workbench.resources.datasets import FORMATS, TYPES, DatasetInputError, split_name
from workbench.resources.experiments import SearchInputError, format_value, parse_params
from workbench.resources.jobs import (
    JobSourceError,
    parse_assignments,
    parse_hyperparameters,
    parse_metrics,
)

from .settings import SettingsError, load_settings, settings_file

REPO = Path(__file__).resolve().parent.parent
CREDENTIALS = Path(os.path.expanduser("~/.config/ai-workbench/credentials.json"))


def _fail(message: str, code: int = 1):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _settings(args):
    try:
        return load_settings(args.config)
    except SettingsError as e:
        _fail(str(e), 2)


def _engine(settings, start: bool = True):
    """The platform's engine; with start, Podman's service is started if none answers."""
    from spawner.engine import EngineUnavailable

    try:
        return settings.engine(start=start)
    except EngineUnavailable as e:
        _fail(str(e))


def _builder(args, settings, engine):
    from images.build import ImageBuilder
    from images.catalog import load_catalog
    from spawner.engine import podman_env

    path = getattr(args, "catalog", None) or (
        settings.path(settings.catalog_path) if settings.catalog_path else None
    )
    catalog = load_catalog(path, registry=settings.image_registry)
    builder = ImageBuilder(
        catalog,
        cli=engine.cli,
        engine_url=engine.url,
        cache_dir=settings.data_path / "cache",
        env=podman_env(),
    )
    return catalog, builder


# --- platform -------------------------------------------------------------------------


def cmd_up(args):
    """Start the platform in the foreground."""
    settings, _ = _settings(args)
    engine = _engine(settings)
    print(f"container engine: {engine.kind} at {engine.url}")
    catalog, builder = _builder(args, settings, engine)
    default = catalog.get(settings.default_image)
    if not builder.exists(default.ref):
        print(f"building the default image {default.name} (first start only)")
        from images.build import BuildError

        try:
            builder.build([default.name])
        except BuildError as e:
            _fail(str(e))
    env = dict(os.environ)
    path = settings_file(args.config)
    if path:
        env["WORKBENCH_CONFIG"] = str(path.resolve())
    node_bin = REPO / "node_modules" / ".bin"
    env["PATH"] = os.pathsep.join([str(node_bin), str(Path(sys.executable).parent), env["PATH"]])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    if not shutil.which("configurable-http-proxy", path=env["PATH"]):
        _fail("configurable-http-proxy is not installed: run `make up` (npm install) first.")
    jupyterhub = shutil.which("jupyterhub", path=env["PATH"])
    hub_db = settings.data_path / "jupyterhub.sqlite"
    first = not (hub_db.exists() and hub_db.stat().st_size) and not settings.db_url
    print(f"\nai-workbench is starting on {settings.bind_url}")
    if settings.authenticator == "native":
        admin = settings.admin_users[0] if settings.admin_users else "admin"
        if first and not settings.initial_admin_password:
            print(f"Sign in as {admin!r} with the password printed below (shown once).")
        else:
            print(
                f"Sign in as {admin!r} with its password "
                "(forgotten? `workbench admin-password` sets a new one)."
            )
        print("Others sign up at /hub/signup; an admin approves them at /hub/authorize.\n")
    sys.stdout.flush()
    os.execve(
        jupyterhub,
        [jupyterhub, "-f", str(REPO / "hub" / "jupyterhub_config.py")],
        env,
    )


def cmd_admin_password(args):
    """Set a new password for a local (native) account."""
    from jupyterhub import orm

    from .auth import set_password

    settings, _ = _settings(args)
    user = args.user or (settings.admin_users[0] if settings.admin_users else "admin")
    password = args.password or getpass.getpass(f"New password for {user}: ")
    if len(password) < 8:
        _fail("Passwords need at least 8 characters.")
    db = orm.new_session_factory(settings.effective_db_url)()
    set_password(db, user, password, settings.password_hash_rounds)
    print(f"Password of {user!r} set.")


# --- images ---------------------------------------------------------------------------


def cmd_images_build(args):
    """Build catalog images (all, or the named ones) with progress."""
    from images.build import BuildError
    from images.catalog import UnknownImage

    settings, _ = _settings(args)
    engine = _engine(settings)
    try:
        catalog, builder = _builder(args, settings, engine)
        results = builder.build(args.names or None, force=args.force)
    except UnknownImage as e:
        _fail(str(e), 2)
    except BuildError as e:
        _fail(str(e))
    finally:
        # a service this command started does not outlive it
        engine.stop_started()
    print()
    for r in results:
        print(f"{r.name:<14} {r.status:<11} {r.seconds:6.0f} s  {r.size / 1e6:7.0f} MB  {r.ref}")


def cmd_images_list(args):
    """List catalog images and whether each is built here."""
    settings, _ = _settings(args)
    # the platform's engine, never one of this command's own
    engine = _engine(settings, start=False)
    catalog, builder = _builder(args, settings, engine)
    for entry in catalog:
        status = "ready" if builder.exists(entry.ref) else "not built"
        print(f"{entry.name:<14} {status:<10} {entry.ref}\n    {entry.description}")


# --- instances (through the platform API) ---------------------------------------------------


def _client(args) -> WorkbenchClient:
    url, token = args.url, None
    if CREDENTIALS.exists():
        saved = json.loads(CREDENTIALS.read_text())
        url = url or saved.get("url")
        token = saved.get("token")
    return WorkbenchClient(url=url, token=os.environ.get("WORKBENCH_TOKEN") or token)


def cmd_login(args):
    """Sign in and keep a token for later commands."""
    client = WorkbenchClient(url=args.url)
    password = os.environ.get("WORKBENCH_PASSWORD") or getpass.getpass(
        f"Password for {args.user}: "
    )
    token = client.login(args.user, password)
    CREDENTIALS.parent.mkdir(parents=True, exist_ok=True)
    CREDENTIALS.write_text(json.dumps({"url": client.url, "token": token}))
    CREDENTIALS.chmod(0o600)
    print(f"Signed in to {client.url} as {args.user}; token saved in {CREDENTIALS}.")


def format_table(headers: list[str], rows: list[list], right: tuple[int, ...] = ()) -> str:
    """Rows under headers, each column as wide as its widest cell (the last one unpadded);
    the columns in `right` aligned to the right."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _print_instances(instances):
    rows = [
        [i["name"], i["state"], i["image"], i["flavor"], f"{i['storage_gib']} GiB"]
        for i in instances
    ]
    print(format_table(["NAME", "STATE", "IMAGE", "FLAVOR", "STORAGE"], rows))


def _print_lifecycle(model):
    """When the instance stops on its own, or how its last run ended."""
    if model.get("stops_at"):
        print(f"Stops at {model['stops_at']} ({model['stop_reason']}) unless extended.")
    elif model.get("state") == "running":
        print("Never stops on its own.")
    elif model.get("stopped_reason"):
        print(f"Last stop: {model['stopped_reason']} at {model.get('stopped_at')}.")
    if model.get("restarts"):
        print(f"Restarted {model['restarts']} time(s) after crashes ({model.get('last_crash')}).")
    if model.get("out_of_memory"):
        print(f"Warning: {model['out_of_memory']['message']}")
    if model.get("error"):
        print(f"Error: {model['error']}")


# the options each `workbench instances` action takes (besides --user and --url)
INSTANCE_OPTIONS = {
    "list": (),
    "flavors": (),
    "show": (),
    "create": (
        *("image", "flavor", "storage", "description"),
        *("ssh", "allowlist", "idle", "max_hours"),
    ),
    "start": (),
    "stop": (),
    "delete": (),
    "ssh": (),
    "switch": ("image", "flavor"),
    "save": ("image", "tag", "description"),
    "update": ("idle", "max_hours", "description", "ssh", "allowlist", "storage"),
    "extend": ("minutes",),
}


def _check_options(args):
    """Exit 2 naming any option given that the action does not take: none is ignored."""
    every = {option for options in INSTANCE_OPTIONS.values() for option in options}
    for option in sorted(every):
        if getattr(args, option) is not None and option not in INSTANCE_OPTIONS[args.action]:
            users = [a for a, options in INSTANCE_OPTIONS.items() if option in options]
            _fail(
                f"`workbench instances {args.action}` takes no --{option.replace('_', '-')} "
                f"(it is for: {', '.join(users)}).",
                2,
            )


def _allowlist(text: str) -> list[str]:
    return [a for a in text.replace(",", " ").split() if a]


def cmd_instances(args):
    """Instance commands."""
    _check_options(args)
    client = _client(args)
    action = args.action
    if action == "list":
        _print_instances(client.instances(args.user))
        return
    if action == "flavors":
        for f in client.flavors():
            print(f"{f['name']:<12} {f['description']}")
        return
    if not args.name:
        _fail(f"`workbench instances {action}` needs an instance name", 2)
    if action == "create":
        print(f"creating {args.name} ...", flush=True)
        ssh = None
        if args.ssh is not None or args.allowlist is not None:
            ssh = {"enabled": args.ssh == "on", "allowlist": _allowlist(args.allowlist or "")}
            if args.ssh is None:
                _fail("--allowlist needs --ssh on", 2)
        auto_stop = None
        if args.idle is not None or args.max_hours is not None:
            auto_stop = {
                key: value
                for key, value in (("idle_minutes", args.idle), ("max_hours", args.max_hours))
                if value is not None
            }
        model = client.create_instance(
            args.name,
            image=args.image,
            flavor=args.flavor,
            storage_gib=args.storage,
            description=args.description or "",
            user=args.user,
            ssh=ssh,
            auto_stop=auto_stop,
        )
    elif action == "start":
        model = client.start_instance(args.name, args.user)
    elif action == "stop":
        model = client.stop_instance(args.name, args.user)
    elif action == "switch":
        changes = {k: v for k, v in (("flavor", args.flavor), ("image", args.image)) if v}
        if not changes:
            _fail("say what to switch to: --flavor and/or --image", 2)
        model = client.update_instance(args.name, args.user, **changes)
    elif action == "save":
        _save_instance(client, args)
        return
    elif action == "update":
        changes = (args.idle, args.max_hours, args.description, args.ssh, args.allowlist)
        if changes + (args.storage,) == (None,) * 6:
            _fail(
                "say what to change: --idle MINUTES, --max-hours HOURS, --description, "
                "--ssh on|off, --allowlist CIDR,..., --storage GIB",
                2,
            )
        if args.storage is not None:
            client.update_instance(args.name, args.user, storage_gib=args.storage)
        if args.ssh is not None or args.allowlist is not None:
            current = client.instance_ssh(args.name, args.user)
            enabled = current["enabled"] if args.ssh is None else args.ssh == "on"
            allowlist = current["allowlist"]
            if args.allowlist is not None:
                allowlist = _allowlist(args.allowlist)
            client.set_ssh(args.name, enabled, allowlist, user=args.user)
        if args.idle is not None or args.max_hours is not None:
            client.set_auto_stop(args.name, args.idle, args.max_hours, user=args.user)
        model = client.instance(args.name, args.user)
        if args.description is not None:
            model = client.update_instance(args.name, args.user, description=args.description)
    elif action == "extend":
        if args.minutes is None:
            _fail("say by how much: --minutes N", 2)
        model = client.extend_instance(args.name, args.minutes, args.user)
    elif action == "delete":
        client.delete_instance(args.name, args.user)
        print(f"Deleted instance {args.name} and its storage.")
        return
    elif action == "ssh":
        _print_ssh(client.instance_ssh(args.name, args.user), args.name)
        return
    else:
        model = client.instance(args.name, args.user)
    _print_instances([model])
    storage = model.get("storage") or {}
    if storage.get("total_bytes"):
        print(f"Storage: {_size(storage['used_bytes'])} used of {_size(storage['total_bytes'])}")
    if storage.get("warning"):
        print(f"Warning: {storage['warning']}")
    elif storage.get("enforced") is False:
        print(f"Storage: {storage['note']}")
    if model.get("state") == "running":
        print(f"\nOpen: {client.url}{model['url']}")
    _print_lifecycle(model)


def _print_ssh(access: dict, name: str):
    """The ssh command and ~/.ssh/config block of an instance."""
    if not access["enabled"]:
        print(
            f"SSH is off for {name}: turn it on with `workbench instances update {name} "
            "--ssh on` (or from the home page).\n"
        )
    if access.get("allowlist"):
        print(f"Allowed from: {', '.join(access['allowlist'])}\n")
    print(access["command"])
    print("\n# ~/.ssh/config")
    print(access["config"], end="")
    print(f"\nThen: ssh {access['alias']}  (VS Code: Remote-SSH, Connect to Host)")


def _print_keys(keys: list[dict]):
    rows = [
        [k["id"], k["name"], k["type"], k["fingerprint"], k.get("last_used") or "never"]
        for k in keys
    ]
    print(format_table(["ID", "NAME", "TYPE", "FINGERPRINT", "LAST USED"], rows))


def cmd_keys(args):
    """SSH key commands."""
    client = _client(args)
    if args.action == "list":
        _print_keys(client.keys(args.user))
    elif args.action == "add":
        path = Path(os.path.expanduser(args.pubkey_file))
        try:
            public_key = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            _fail(f"cannot read the public key file {path}: {e}", 2)
        if "PRIVATE KEY" in public_key:
            _fail(f"{path} is a private key: give the .pub file next to it", 2)
        model = client.add_key(args.name, public_key, args.user)
        print(f"Added key {model['name']} (id {model['id']}, {model['fingerprint']}).")
    elif args.action == "generate":
        out = Path(os.path.expanduser(args.out)) if args.out else None
        if out is not None:
            for path in (out, out.with_name(out.name + ".pub")):
                if path.exists():
                    _fail(f"{path} exists: choose another --out file", 2)
            if not out.parent.is_dir():
                _fail(f"folder {out.parent} does not exist: create it or choose another", 2)
        model = client.generate_key(args.name, args.user)
        if out is None:
            print(model["private_key"], end="")
            print(
                f"# key {model['name']} (id {model['id']}, {model['fingerprint']}): save the "
                "private key above (mode 0600), it is not kept by the platform",
                file=sys.stderr,
            )
            return
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(model["private_key"])
            out.with_name(out.name + ".pub").write_text(model["public_key"].strip() + "\n")
        except OSError as e:
            out.unlink(missing_ok=True)
            client.delete_key(model["id"], args.user)  # nothing half-made is left
            _fail(f"cannot write {out}: {e}")
        print(f"Generated key {model['name']} (id {model['id']}, {model['fingerprint']}).")
        print(f"Private key: {out} (mode 0600); use it with ssh -i {out}")
    elif args.action == "delete":
        keys = client.keys(args.user)
        match = [k for k in keys if str(k["id"]) == args.key] or [
            k for k in keys if k["name"] == args.key
        ]
        if not match:
            _fail(f"No key {args.key!r}: see `workbench keys list` for ids and names.")
        client.delete_key(match[0]["id"], args.user)
        print(f"Deleted key {match[0]['name']} (id {match[0]['id']}).")


def cmd_audit(args):
    """Audit commands: verify the chain, export events."""
    if args.action == "verify":
        if args.local:
            from .audit import AuditLog
            from .db import Database, database_url

            settings, _ = _settings(args)
            checked, problems = AuditLog(Database(database_url(settings))).verify()
            result = {"ok": not problems, "checked": checked, "problems": problems}
        else:
            result = _client(args).audit_verify()
        if result["ok"]:
            print(f"audit log intact: {result['checked']} events verified")
            return
        for problem in result["problems"]:
            print(f"TAMPERED: {problem}")
        _fail(f"the audit log does not verify ({len(result['problems'])} problem(s))")
    filters = {
        "since": args.since,
        "until": args.until,
        "user": args.filter_user,
        "resource": args.resource,
        "event": args.event,
    }
    sys.stdout.write(_client(args).audit_export(**filters))


def _save_instance(client, args):
    if not args.image:
        _fail("say what to save it as: --image NAME [--tag TAG] [--description TEXT]", 2)
    status = client.save_instance(
        args.name, args.image, args.tag or "latest", args.description or "", user=args.user
    )
    shown = {}

    def show(status):
        line = f"[{status['progress']:3d}%] {status['message']}"
        if shown.get("line") != line:
            print(line, flush=True)
            shown["line"] = line

    show(status)
    status = client.wait_saved(args.name, args.user, on_status=show)
    image = status["image"]
    print(f"\nSaved {image['name']} ({image['ref']}, {image['added_size'] / 1e6:.0f} MB added).")
    print(f"Use it: workbench instances create NEW --image {image['name']}")


def _image_name_tag(value: str) -> tuple[str, str]:
    name, _, tag = (value or "").removeprefix("saved:").rpartition("/")[-1].partition(":")
    if not name:
        _fail("name the saved image as NAME:TAG, for example bert-env:v1", 2)
    return name, tag or "latest"


def _print_images(images):
    rows = []
    for i in images:
        size = f"{i['added_size'] / 1e6:.0f} MB" if i.get("kind") == "saved" else ""
        status = "" if i.get("kind") == "saved" else f" ({i.get('status', '')})"
        rows.append(
            [
                i["name"],
                i.get("kind", ""),
                size,
                i.get("owner", "-"),
                f"{i.get('description', '')}{status}",
            ]
        )
    print(format_table(["NAME", "KIND", "SIZE", "OWNER", "DESCRIPTION"], rows, right=(2,)))


def cmd_saved_images(args):
    """Saved image commands through the platform API."""
    client = _client(args)
    action = args.images_command
    if action == "pull":
        print(f"pulling {args.ref} ...", flush=True)
        image = client.pull_image(args.ref, args.name, args.tag, user=args.user, base=args.base)
        print(f"Registered {image['name']} ({image['ref']}).")
        return
    name, tag = _image_name_tag(args.image)
    if action == "delete":
        client.delete_image(name, tag, user=args.user)
        print(f"Deleted saved image {name}:{tag}.")
    elif action == "push":
        print(f"pushing {name}:{tag} ...", flush=True)
        image = client.push_image(name, tag, user=args.user)
        print(f"Pushed to {image['pushed_ref']}.")
    elif action == "share":
        everyone = True if args.everyone else False if args.no_everyone else None
        image = client.share_image(
            name,
            tag,
            users=args.users,
            everyone=everyone,
            replace=False,
            remove=args.remove,
            user=args.user,
        )
        print(f"{image['name']} is shared with: {', '.join(image['shares']) or 'nobody'}")


# --- training jobs (through the platform API) -----------------------------------------


def _job_changes(args) -> dict:
    """The job settings given on the command line, None where not given; exit 2 on a
    malformed --param, --metric or --input, before any request."""
    try:
        params = parse_hyperparameters(args.param or [])
        metrics = parse_metrics(args.metric or [])
        inputs = {}
        for name, where in parse_assignments(args.input or [], "input").items():
            instance, sep, path = where.partition(":")
            if not sep or not instance:
                raise ValueError(
                    f"input {name}={where!r} is not NAME=INSTANCE:PATH "
                    "(for example data=nb1:datasets/mnist)"
                )
            inputs[name] = {"instance": instance, "path": path}
    except ValueError as e:
        _fail(str(e), 2)
    return {
        "command": args.command,
        "runtime": args.runtime,
        "image": args.image,
        "flavor": args.flavor,
        "nodes": args.nodes,
        "processes_per_node": args.processes_per_node,
        "hyperparameters": params or None,
        "metrics": metrics or None,
        "inputs": inputs or None,
        "max_run_seconds": args.max_run_seconds,
        "max_restarts": args.max_restarts,
        "description": args.description,
    }


def _when(value) -> str:
    """An API time as a short UTC time for tables: 2026-12-02 04:25:59."""
    from workbench.times import parse_time

    moment = parse_time(value) if value else None
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _version_line(data: dict) -> str:
    state = data["state"]
    if data.get("queue_position"):
        state += f", position {data['queue_position']} in the queue"
    reason = f": {data['reason']}" if data.get("reason") else ""
    return f"{data['name']} version {data['version']} ({state}){reason}"


def _follow_job(job) -> None:
    """Print node 0's log as it comes until the version ends; exit 1 unless it succeeded."""
    for line in job.logs(follow=True):
        print(line, flush=True)
    data = job.wait()
    print(f"\nJob {_version_line(data)}.")
    if data["state"] != "succeeded":
        sys.exit(1)


def _print_jobs(jobs: list[dict]):
    rows = [
        [
            j["name"],
            j.get("owner", ""),
            j.get("latest", ""),
            j.get("state", ""),
            j.get("workspace", ""),
            _when(j.get("created")),
            j.get("reason") or "",
        ]
        for j in jobs
    ]
    headers = ["NAME", "OWNER", "VERSION", "STATE", "WORKSPACE", "CREATED", "REASON"]
    print(format_table(headers, rows, right=(2,)))


def _print_job(job: dict, version: dict):
    """A job's versions, then one version's settings, nodes and files."""
    description = f": {job['description']}" if job.get("description") else ""
    print(f"Job {job['name']} of {job['owner']}, workspace {job.get('workspace')}{description}")
    rows = [
        [
            v["version"],
            v["state"],
            _when(v.get("created")),
            _when(v.get("started")),
            _when(v.get("finished")),
            v.get("reason") or "",
        ]
        for v in sorted(job.get("versions") or [], key=lambda v: v["version"])
    ]
    print(format_table(["VERSION", "STATE", "CREATED", "STARTED", "FINISHED", "REASON"], rows))
    spec = version.get("spec") or {}
    source = spec.get("source") or {}
    print(f"\nVersion {version['version']}: {_version_line(version)}")
    entry = f" ({source['entry']})" if source.get("entry") else ""
    print(f"  code:     {source.get('kind', '?')}{entry}")
    if spec.get("command"):
        print(f"  command:  {spec['command']}")
    print(
        f"  runs on:  image {spec.get('image')}, flavor {spec.get('flavor')}, runtime "
        f"{spec.get('runtime')}, {spec.get('nodes', 1)} node(s) x "
        f"{spec.get('processes_per_node', 1)} process(es)"
    )
    if spec.get("hyperparameters"):
        print(f"  params:   {json.dumps(spec['hyperparameters'])}")
    for name, where in (spec.get("inputs") or {}).items():
        print(f"  input:    {name} = {where.get('instance')}:{where.get('path')}")
    for metric in spec.get("metrics") or []:
        print(f"  metric:   {metric['name']} = {metric['regex']}")
    limits = []
    if spec.get("max_run_seconds"):
        limits.append(f"stops after {spec['max_run_seconds']} s")
    if spec.get("max_restarts"):
        limits.append(f"restarts up to {spec['max_restarts']} time(s)")
    if limits:
        print(f"  limits:   {', '.join(limits)}")
    if version.get("restarts"):
        print(f"  restarts: {version['restarts']}")
    for node in version.get("nodes") or []:
        code = "" if node.get("exit_code") is None else f", exit code {node['exit_code']}"
        reason = f": {node['reason']}" if node.get("reason") else ""
        print(f"  node {node['rank']}:   {node['state']}{code}{reason}")
    if version.get("output_path"):
        print(f"  output:   {version['output_path']} (in your instances' work folder)")


def _print_metrics(metrics: dict):
    rows = []
    for name, points in sorted(metrics.items()):
        values = [p["value"] for p in points]
        if not values:
            continue
        last = points[-1]
        rows.append(
            [name, len(values), last.get("step", ""), f"{last['value']:g}"]
            + [f"{min(values):g}", f"{max(values):g}"]
        )
    if not rows:
        print("No metrics yet.")
        return
    print(format_table(["METRIC", "POINTS", "STEP", "LAST", "MIN", "MAX"], rows, (1, 2, 3, 4, 5)))


def cmd_jobs(args):
    """Training job commands."""
    action = args.action
    # the settings are checked before any request
    changes = _job_changes(args) if action in ("submit", "rerun") else {}
    changes = {k: v for k, v in changes.items() if v is not None}
    client = _client(args)
    if action == "submit":
        try:
            job = client.jobs.submit(
                args.path, name=args.name, workspace=args.workspace, kind=args.kind, **changes
            )
        except JobSourceError as e:
            _fail(e.message, 2)
        print(f"Submitted job {_version_line(job.data)}.")
        if args.follow:
            _follow_job(job)
        else:
            print(f"Follow it: workbench jobs logs {job.name} -f")
        return
    if action == "list":
        _print_jobs(client.jobs.list(args.workspace, all=args.all))
        return
    if action == "rerun":
        description = changes.pop("description", None)
        if "hyperparameters" in changes:
            # --param changes the named ones: the others keep the last version's values
            last = client.jobs.get(args.name, args.owner)
            previous = last.spec.get("hyperparameters") or {}
            changes["hyperparameters"] = {**previous, **changes["hyperparameters"]}
        if description is not None:
            client.jobs.update(args.name, args.owner, description=description)
        job = client.jobs.rerun(args.name, args.owner, **changes)
        print(f"Started job {_version_line(job.data)}.")
        if args.follow:
            _follow_job(job)
        return
    if action == "delete":
        client.jobs.delete(args.name, args.version, args.owner)
        if args.version is None:
            print(f"Deleted job {args.name} and all its versions.")
        else:
            print(f"Deleted version {args.version} of job {args.name}.")
        return
    job = client.jobs.get(args.name, args.owner, args.version)
    if action == "show":
        _print_job(client.jobs.describe(args.name, job.owner), job.data)
    elif action == "logs":
        if args.follow:
            for line in job.logs(args.node, follow=True):
                print(line, flush=True)
        else:
            sys.stdout.write(job.read_logs(args.node))
    elif action == "stop":
        ended = job.done
        data = job.stop()
        if data["state"] == "stopping":
            print(f"Stopping job {_version_line(data)}.")
        elif data["state"] == "stopped" and not ended:
            print(f"Stopped job {_version_line(data)}.")
        else:
            print(f"Job {_version_line(data)} had already ended.")
    elif action == "metrics":
        metrics = job.metrics()
        if args.json:
            print(json.dumps(metrics, indent=1))
        else:
            _print_metrics(metrics)
    elif action == "files":
        rows = [
            [f["path"], f.get("size", "") if f.get("type") == "file" else "-", f.get("type", "")]
            for f in job.files(args.path)
        ]
        print(format_table(["PATH", "SIZE", "TYPE"], rows, right=(1,)))
    elif action == "download":
        target = job.download(args.path, args.to)
        print(f"Downloaded {args.path} of {job.name} version {job.version} to {target}.")


def _job_parsers(sub):
    """`workbench jobs ...`: submit, list, show, logs, stop, rerun, delete, metrics, files,
    download."""
    jobs = sub.add_parser(
        "jobs", help="training jobs: submit, follow, stop, re-run; hyperparameter searches"
    ).add_subparsers(dest="action", required=True)

    def settings(p, rerun: bool = False):
        p.add_argument(
            "--command", help="what to run (folders: required; files: default python FILE)"
        )
        p.add_argument("--runtime", help="plain (default), pytorch, tensorflow or mindspore")
        p.add_argument("--image", help="image name (default: the instance's, or the platform's)")
        p.add_argument("--flavor", help="flavor of each node (default as --image)")
        p.add_argument("--nodes", type=int, help="how many nodes (default 1)")
        p.add_argument("--processes-per-node", type=int, help="processes per node (default 1)")
        p.add_argument(
            "--param",
            action="append",
            metavar="NAME=VALUE",
            help="a hyperparameter, repeatable (values as JSON when they parse: 0.1, 3, true)"
            + ("; the others keep the last version's values" if rerun else ""),
        )
        p.add_argument(
            "--metric",
            action="append",
            metavar="NAME=REGEX",
            help="a metric read from the log by a regex with one group, repeatable",
        )
        p.add_argument(
            "--input",
            action="append",
            metavar="NAME=INSTANCE:PATH",
            help="a read-only input folder of an instance's storage, repeatable",
        )
        p.add_argument("--max-run-seconds", type=int, help="stop after this long (0: never)")
        p.add_argument("--max-restarts", type=int, help="restarts after a failure (default 0)")
        p.add_argument("--description")
        p.add_argument("--follow", "-f", action="store_true", help="print the log until it ends")

    p = jobs.add_parser("submit", help="run a .py file, a notebook or a folder as a job")
    p.add_argument("path", help="a .py file, a .ipynb notebook, or a folder (with --command)")
    p.add_argument("--name", help="the job's name (default: from the file or folder name)")
    p.add_argument(
        "--kind",
        choices=["file", "notebook", "folder"],
        help="what PATH is, when its name does not say (file: e.g. a shell script, with --command)",
    )
    p.add_argument("--workspace", help="the workspace the job belongs to (default: default)")
    settings(p)
    p = jobs.add_parser("list", help="your jobs and your workspaces' jobs")
    p.add_argument("--workspace", help="only this workspace's jobs")
    p.add_argument("--all", action="store_true", help="everyone's jobs (administrators)")
    p = jobs.add_parser("show", help="a job's versions and one version's settings")
    p.add_argument("name")
    p = jobs.add_parser("logs", help="a version's log (-f: follow it until the version ends)")
    p.add_argument("name")
    p.add_argument("--node", type=int, default=0, help="the node's rank (default 0)")
    p.add_argument("--follow", "-f", action="store_true", help="print lines as they come")
    p = jobs.add_parser("stop", help="stop a version")
    p.add_argument("name")
    p = jobs.add_parser("rerun", help="run a job again as a new version, with changes")
    p.add_argument("name")
    settings(p, rerun=True)
    p = jobs.add_parser("delete", help="delete a job (all versions) or one --version")
    p.add_argument("name")
    p = jobs.add_parser("metrics", help="a version's metrics: points, last, min, max")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="every point, as JSON")
    p = jobs.add_parser("files", help="list a version's files")
    p.add_argument("name")
    p.add_argument(
        "path", nargs="?", default="output", help="output (default), checkpoints, code, logs"
    )
    p = jobs.add_parser("download", help="download a file or folder of a version")
    p.add_argument("name")
    p.add_argument("path", help="a file or folder, e.g. output/model.pt or output")
    p.add_argument("--to", default=".", help="a file or folder to write to (default: here)")
    for action, p in jobs.choices.items():
        if action not in ("submit", "list"):
            p.add_argument("--owner", help="a job of another member of your workspaces")
        if action not in ("submit", "list", "rerun"):
            p.add_argument("--version", type=int, help="the version (default: the latest)")
        p.add_argument("--url", help="platform URL (default: the one `workbench login` saved)")
        p.set_defaults(func=cmd_jobs)
    _search_parsers(jobs)


# --- hyperparameter searches and run comparisons (through the platform API) -----------------


def _search_request(args) -> dict:
    """search()'s settings from the command line; exit 2 on a malformed --param, --space,
    --fixed, --metric or --input, before any request."""
    if not args.path and not args.job:
        _fail("give PATH (the code to search with) or --job NAME (one of your jobs)", 2)
    space = _json_argument(args.space, "--space") if args.space else {}
    if not isinstance(space, dict):
        _fail(
            '--space is not a JSON object of name -> range (for example {"x": '
            '{"type": "float", "low": -1, "high": 1}})',
            2,
        )
    try:
        space.update(parse_params(args.param or []))
    except ValueError as e:
        _fail(str(e), 2)
    if not space:
        _fail(
            "give the parameters to search: --param NAME=float:LOW:HIGH (repeatable) or "
            "--space JSON",
            2,
        )
    settings = _job_changes(argparse.Namespace(**{**vars(args), "param": args.fixed}))
    return {
        **{k: v for k, v in settings.items() if v is not None},
        "job": args.job,
        "kind": args.kind,
        "workspace": args.workspace,
        "space": space,
        "objective": args.objective,
        "direction": "maximize" if args.maximize else "minimize",
        "trials": args.trials,
        "parallel": args.parallel,
        "sampler": args.sampler,
        "pruner": args.pruner,
        "seed": args.seed,
    }


def _params_text(params: dict) -> str:
    return " ".join(f"{name}={format_value(value)}" for name, value in params.items())


def _print_trials(search: dict, trials: list[dict]):
    """A search's summary, its trials (the best marked *), and the best trial."""
    objective = search.get("objective") or {}
    metric = objective.get("metric", "value")
    reason = f": {search['reason']}" if search.get("reason") else ""
    print(
        f"Search {search['id']} of {search['owner']} over job {search['job']} "
        f"({search['state']}{reason}); {objective.get('direction', 'minimize')} {metric}, "
        f"{len(trials)} of {search.get('trials_planned')} trials"
    )
    rows = [
        [
            f"{t['number']}{' *' if t.get('best') else ''}",
            "-" if t.get("version") is None else t["version"],
            t["state"],
            format_value(t.get("value")) or "-",
            t.get("steps", 0),
            _params_text(t.get("params") or {}),
            t.get("reason") or "",
        ]
        for t in sorted(trials, key=lambda t: t["number"])
    ]
    headers = ["TRIAL", "VERSION", "STATE", metric.upper(), "STEPS", "PARAMETERS", "REASON"]
    print(format_table(headers, rows, right=(1, 3, 4)))
    best = next((t for t in trials if t.get("best")), None)
    if best is not None:
        print(
            f"Best: trial {best['number']} (version {best['version']} of {search['job']}): "
            f"{metric} {format_value(best['value'])} with {_params_text(best['params'])}"
        )
    else:
        print("Best: no trial has completed yet.")


def _print_searches(searches: list[dict]):
    rows = []
    for s in searches:
        counts = s.get("counts") or {}
        ended = sum(n for state, n in counts.items() if state not in ("waiting", "running"))
        best = s.get("best") or {}
        objective = s.get("objective") or {}
        rows.append(
            [
                s["id"],
                s["job"],
                s.get("owner", ""),
                s["state"],
                f"{ended}/{s.get('trials_planned', '')}",
                f"{objective.get('direction', '')[:3]} {objective.get('metric', '')}",
                format_value(best.get("value")) or "-",
                _when(s.get("created")),
                s.get("reason") or "",
            ]
        )
    headers = ["ID", "JOB", "OWNER", "STATE", "ENDED", "OBJECTIVE", "BEST", "CREATED", "REASON"]
    print(format_table(headers, rows, right=(0, 4, 6)))


def _print_comparison(comparison):
    """Runs side by side: a column per parameter and final metric; '*' marks those that
    differ between the runs."""
    differs = comparison.differs
    columns = comparison.columns()
    headers = [
        ("RUN" if c == "run" else "STATE" if c == "state" else c) + (" *" if differs.get(c) else "")
        for c in columns
    ]
    rows = [[format_value(row.get(c)) or "-" for c in columns] for row in comparison.table()]
    print(format_table(headers, rows))
    if any(differs.values()):
        print("* differs between the runs")


def cmd_searches(args):
    """Hyperparameter search and comparison commands."""
    action = args.action
    request = _search_request(args) if action == "search" else {}
    client = _client(args)
    if action == "search":
        try:
            search = client.experiments.search(args.path, **request)
        except (JobSourceError, SearchInputError) as e:
            _fail(e.message, 2)
        data = search.data
        print(
            f"Started search {search.id}: {data.get('trials_planned')} trials of job "
            f"{search.job}, {data.get('parallel')} at once, "
            f"{data['objective']['direction']} {data['objective']['metric']}."
        )
        if not args.wait:
            print(f"Follow it: workbench jobs trials {search.id}")
            return
        search.wait(progress=True)
        print()
        _print_trials(search.data, search.data.get("trials") or [])
        if search.state != "completed":
            sys.exit(1)
    elif action == "searches":
        _print_searches(client.experiments.searches(args.workspace, job=args.job, all=args.all))
    elif action == "trials":
        search = client.experiments.get(args.search_id)
        _print_trials(search.data, search.data.get("trials") or [])
    elif action == "search-stop":
        search = client.experiments.get(args.search_id)
        if search.done:
            print(f"Search {search.id} had already ended ({search.state}).")
            return
        search.stop()
        print(f"{'Stopped' if search.done else 'Stopping'} search {search.id}.")
        print(search.progress_line())
    elif action == "compare":
        if not args.runs and args.search is None:
            _fail("give runs (NAME/VERSION or OWNER/NAME/VERSION) or --search ID", 2)
        try:
            comparison = client.experiments.compare(args.runs or None, search=args.search)
        except SearchInputError as e:
            _fail(e.message, 2)
        if args.json:
            _print_json(comparison.data)
        else:
            _print_comparison(comparison)


def _search_parsers(jobs):
    """`workbench jobs search|searches|trials|search-stop|compare`."""
    p = jobs.add_parser("search", help="run a hyperparameter search: trials as job versions")
    p.add_argument("path", nargs="?", help="a .py file, notebook or folder (else --job)")
    p.add_argument("--job", help="the job's name (default: from PATH); without PATH one of yours")
    p.add_argument(
        "--param",
        action="append",
        metavar="NAME=RANGE",
        help="a parameter to search, repeatable: NAME=float:LOW:HIGH[:log], "
        "NAME=int:LOW:HIGH[:STEP], NAME=choice:A,B,C",
    )
    p.add_argument("--space", help="the parameters to search as JSON (or @FILE), as the API")
    p.add_argument("--objective", default="loss", help="the metric to optimise (default loss)")
    p.add_argument("--maximize", action="store_true", help="maximise it (default: minimise)")
    p.add_argument("--trials", type=int, default=8, help="how many trials (default 8)")
    p.add_argument("--parallel", type=int, default=1, help="trials at once (default 1)")
    p.add_argument("--sampler", default="tpe", choices=["tpe", "random", "grid"])
    p.add_argument("--pruner", default="median", choices=["median", "none"])
    p.add_argument("--seed", type=int, help="the sampler's seed (default: random)")
    p.add_argument(
        "--fixed",
        action="append",
        metavar="NAME=VALUE",
        help="a hyperparameter the same in every trial, repeatable",
    )
    p.add_argument("--command", help="what to run (folders: required; files: python FILE)")
    p.add_argument("--kind", choices=["file", "notebook", "folder"], help="what PATH is")
    p.add_argument("--runtime", help="plain (default), pytorch, tensorflow or mindspore")
    p.add_argument("--image", help="image name (default: the platform's)")
    p.add_argument("--flavor", help="flavor of each node (default: the platform's)")
    p.add_argument("--nodes", type=int, help="nodes of each trial (default 1)")
    p.add_argument("--processes-per-node", type=int, help="processes per node (default 1)")
    p.add_argument("--metric", action="append", metavar="NAME=REGEX", help="a log metric rule")
    p.add_argument("--input", action="append", metavar="NAME=INSTANCE:PATH", help="an input")
    p.add_argument("--max-run-seconds", type=int, help="stop each trial after this long")
    p.add_argument("--max-restarts", type=int, help="restarts after a failure (default 0)")
    p.add_argument("--workspace", help="the workspace of a new job (default: default)")
    p.add_argument("--description")
    p.add_argument("--wait", action="store_true", help="show progress until it ends, then trials")
    p = jobs.add_parser("searches", help="your searches and your workspaces'")
    p.add_argument("--workspace", help="only this workspace's searches")
    p.add_argument("--job", help="only this job's searches")
    p.add_argument("--all", action="store_true", help="everyone's (administrators)")
    p = jobs.add_parser("trials", help="a search's trials and its best")
    p.add_argument("search_id", type=int, metavar="SEARCH_ID")
    p = jobs.add_parser("search-stop", help="stop a search and its running trials")
    p.add_argument("search_id", type=int, metavar="SEARCH_ID")
    p = jobs.add_parser("compare", help="runs side by side: parameters and final metrics")
    p.add_argument("runs", nargs="*", metavar="RUN", help="NAME/VERSION or OWNER/NAME/VERSION")
    p.add_argument("--search", type=int, metavar="SEARCH_ID", help="a search's trials' runs")
    p.add_argument("--json", action="store_true", help="the whole comparison, curves too")
    for action in ("search", "searches", "trials", "search-stop", "compare"):
        p = jobs.choices[action]
        p.add_argument("--url", help="platform URL (default: the one `workbench login` saved)")
        p.set_defaults(func=cmd_searches)


# --- models, services and batch runs (through the platform API) ----------------------------


def _json_argument(text: str, what: str):
    """JSON from the command line, or from a file given as @PATH; exit 2 when it is neither."""
    if text.startswith("@"):
        path = Path(os.path.expanduser(text[1:]))
        try:
            text = path.read_text()
        except OSError as e:
            _fail(f"{what}: cannot read {path}: {e}", 2)
    try:
        return json.loads(text)
    except ValueError as e:
        _fail(f"{what} is not JSON ({e}); give JSON or @FILE", 2)


def _replicas(text: str | None) -> tuple[int, int] | None:
    """--replicas N or MIN-MAX; exit 2 otherwise."""
    if text is None:
        return None
    low, sep, high = text.partition("-")
    try:
        pair = (int(low), int(high if sep else low))
    except ValueError:
        _fail(f"--replicas {text!r} is not N or MIN-MAX (for example 1-3)", 2)
    if pair[0] < 0 or pair[1] < max(pair[0], 1):
        _fail(f"--replicas {text!r}: MIN must be 0 or more and MAX at least MIN and 1", 2)
    return pair


def _traffic(text: str) -> dict[str, int]:
    """--traffic 1=90,2=10 -> {"1": 90, "2": 10}; exit 2 when malformed."""
    usage = "use VERSION=PERCENT,... (for example 1=90,2=10)"
    try:
        split = parse_assignments([p for p in text.split(",") if p.strip()], "traffic")
    except ValueError as e:
        _fail(f"--traffic {text!r}: {e}; {usage}", 2)
    traffic = {}
    for version, percent in split.items():
        try:
            traffic[version] = int(percent)
        except ValueError:
            _fail(f"--traffic {text!r}: {percent!r} is not a whole percent; {usage}", 2)
    if not traffic:
        _fail("--traffic is empty; use VERSION=PERCENT,... (for example 1=90,2=10)", 2)
    if sum(traffic.values()) != 100:
        _fail(f"--traffic {text!r}: the percents add up to {sum(traffic.values())}, not 100", 2)
    return traffic


def _model_source(args) -> dict:
    """The source of a new model version from --job / --instance / --serving-image; exit 2
    unless exactly one is given."""
    from workbench.resources.models import image_source, job_source, storage_source

    given = [x for x in (args.job, args.instance, args.serving_image) if x]
    if len(given) != 1:
        _fail("give one source: --job JOB, --instance INSTANCE (with --path) or --serving-image", 2)
    if args.job:
        return job_source(args.job, args.job_version, args.path or "output")
    if args.instance:
        if not args.path:
            _fail("--instance needs --path: the model's folder or file in its storage", 2)
        return storage_source(args.instance, args.path)
    return image_source(args.serving_image, args.command or "")


def _print_models(models: list[dict]):
    rows = [
        [
            m["name"],
            m.get("owner", ""),
            m.get("latest", "") or "",
            m.get("workspace", ""),
            _when(m.get("created")),
            m.get("description") or "",
        ]
        for m in models
    ]
    print(format_table(["NAME", "OWNER", "LATEST", "WORKSPACE", "CREATED", "DESCRIPTION"], rows))


def _print_model(model: dict, only: int | None = None):
    description = f": {model['description']}" if model.get("description") else ""
    print(
        f"Model {model['name']} of {model['owner']}, workspace {model.get('workspace')}"
        f"{description}"
    )
    versions = sorted(model.get("versions") or [], key=lambda v: v["version"])
    rows = [
        [
            v["version"],
            v.get("state", ""),
            v.get("format", ""),
            v.get("image", ""),
            len(v.get("files") or []),
            _when(v.get("created")),
            v.get("reason") or "",
        ]
        for v in versions
    ]
    print(format_table(["VERSION", "STATE", "FORMAT", "IMAGE", "FILES", "CREATED", "REASON"], rows))
    for v in versions:
        if only is not None and v["version"] != only:
            continue
        print(f"\nVersion {v['version']}:")
        source = v.get("source") or {}
        print(f"  source:    {json.dumps(source)}")
        if v.get("lineage"):
            lineage = v["lineage"]
            print(f"  lineage:   job {lineage.get('job')} version {lineage.get('job_version')}")
        if v.get("metrics"):
            print(f"  metrics:   {json.dumps(v['metrics'])}")
        if v.get("predictor"):
            print(f"  predictor: {v['predictor']}")
        if v.get("signature"):
            print(f"  signature: {json.dumps(v['signature'])}")
        for f in v.get("files") or []:
            digest = f.get("sha256", "")[:16]
            print(f"  file:      {f['path']} ({f.get('size')} bytes, sha256 {digest}...)")


def _model_version_line(version: dict) -> str:
    state = version.get("state") or ""
    reason = f": {version['reason']}" if version.get("reason") else ""
    return f"version {version.get('version')} ({state}{reason})"


def cmd_models(args):
    """Model commands."""
    action = args.action
    source = _model_source(args) if action in ("create", "add-version") else None
    signature = (
        _json_argument(args.signature, "--signature") if getattr(args, "signature", None) else None
    )
    client = _client(args)
    if action == "list":
        _print_models(client.models.list(args.workspace))
    elif action == "show":
        _print_model(client.models.get(args.name, args.owner).data, args.version)
    elif action == "create":
        model = client.models.create(
            args.name,
            format=args.format,
            source=source,
            image=args.image,
            signature=signature,
            predictor=args.predictor,
            command=args.command,
            description=args.description or "",
            workspace=args.workspace,
        )
        version = model.versions[-1] if model.versions else {"version": 1}
        print(f"Registered model {model.name} {_model_version_line(version)}.")
    elif action == "add-version":
        model = client.models.get(args.name, args.owner)
        version = model.add_version(
            format=args.format,
            source=source,
            image=args.image,
            signature=signature,
            predictor=args.predictor,
            command=args.command,
        )
        print(f"Registered model {model.name} {_model_version_line(version)}.")
    elif action == "delete":
        client.models.delete(args.name, args.owner, args.version)
        if args.version is None:
            print(f"Deleted model {args.name} and all its versions.")
        else:
            print(f"Deleted version {args.version} of model {args.name}.")


def _print_services(services: list[dict]):
    rows = []
    for s in services:
        split = ", ".join(
            f"{p['model']}:{p['version']} {p.get('weight', 0)}%" for p in s.get("predictors") or []
        )
        rows.append(
            [s["name"], s.get("owner", ""), s.get("state", ""), split, s.get("reason") or ""]
        )
    print(format_table(["NAME", "OWNER", "STATE", "TRAFFIC", "REASON"], rows))


def _print_service(service: dict):
    description = f": {service['description']}" if service.get("description") else ""
    reason = f" ({service['reason']})" if service.get("reason") else ""
    print(f"Service {service['name']} of {service['owner']}{description}")
    print(f"  state:   {service.get('state')}{reason}")
    print(f"  url:     {service.get('url')}")
    if service.get("public"):
        print(f"  access:  the owner, keys and the members of workspace {service.get('workspace')}")
    else:
        print("  access:  the owner and keys")
    if service.get("scale_to_zero_seconds"):
        print(f"  scales to zero after {service['scale_to_zero_seconds']} s idle")
    for p in service.get("predictors") or []:
        print(
            f"  predictor {p['model']}:{p['version']}: {p.get('weight')}% of traffic, flavor "
            f"{p.get('flavor')}, replicas {p.get('min_replicas')}-{p.get('max_replicas')}"
        )
        for r in p.get("replicas") or []:
            restarts = f", {r['restarts']} restart(s)" if r.get("restarts") else ""
            print(f"    replica {r.get('id')}: {r.get('state')}{restarts}")


def _print_service_metrics(metrics: dict):
    rows = [
        [
            name,
            m.get("requests", 0),
            m.get("errors", 0),
            m.get("p50_ms", ""),
            m.get("p95_ms", ""),
            m.get("p99_ms", ""),
            m.get("in_flight", 0),
            len(m.get("replicas") or []),
        ]
        for name, m in sorted((metrics.get("predictors") or {}).items())
    ]
    headers = [
        "PREDICTOR",
        "REQUESTS",
        "ERRORS",
        "P50 MS",
        "P95 MS",
        "P99 MS",
        "IN FLIGHT",
        "REPLICAS",
    ]
    print(format_table(headers, rows, right=(1, 2, 3, 4, 5, 6, 7)))


def cmd_services(args):
    """Service commands."""
    action = args.action
    # what is checked before any request
    traffic = _traffic(args.traffic) if getattr(args, "traffic", None) else None
    replicas = _replicas(getattr(args, "replicas", None))
    data = _json_argument(args.data, "--data") if action == "predict" else None
    client = _client(args)
    if action == "list":
        _print_services(client.services.list(args.workspace))
        return
    if action == "deploy":
        service = client.services.create(
            args.name,
            model=args.model,
            version=args.version,
            flavor=args.flavor,
            replicas=replicas or 1,
            target_in_flight=args.target_in_flight,
            public=args.public,
            description=args.description or "",
            workspace=args.workspace,
            scale_to_zero_seconds=args.scale_to_zero,
        )
        print(f"Deploying service {service.name} ({service.state}): {service.url}")
        if args.wait:
            service.wait_ready(args.timeout)
            print(f"Service {service.name} is running.")
        return
    service = client.services.get(args.name, args.owner)
    if action == "show":
        _print_service(service.data)
    elif action == "update":
        public = {"public": True, "private": False}.get(args.access) if args.access else None
        if traffic is None and args.description is None and public is None:
            _fail("nothing to change: give --traffic, --description or --access", 2)
        service.update(traffic=traffic, description=args.description, public=public)
        _print_service(service.data)
    elif action in ("promote", "rollback", "start", "stop"):
        getattr(service, action)()
        done = {
            "promote": "promoted",
            "rollback": "rolled back",
            "start": "starting",
            "stop": "stopping",
        }
        print(f"Service {service.name} {done[action]} ({service.state}).")
    elif action == "delete":
        service.delete()
        print(f"Deleted service {service.name}.")
    elif action == "predict":
        print(json.dumps(service.predict(data, key=args.key), indent=1))
    elif action == "metrics":
        if args.prometheus:
            sys.stdout.write(service.metrics(format="prometheus"))
        elif args.json:
            print(json.dumps(service.metrics(), indent=1))
        else:
            _print_service_metrics(service.metrics())
    elif action == "logs":
        sys.stdout.write(service.logs(args.replica))


def cmd_service_keys(args):
    """Access keys of a service."""
    client = _client(args)
    service = client.services.get(args.service, args.owner)
    if args.key_action == "list":
        rows = [
            [
                k["name"],
                k.get("prefix", ""),
                _when(k.get("created")),
                _when(k.get("last_used")) or "never",
            ]
            for k in service.keys.list()
        ]
        print(format_table(["NAME", "PREFIX", "CREATED", "LAST USED"], rows))
    elif args.key_action == "create":
        key = service.keys.create(args.key_name)
        print(key["key"])
        print(
            f"# key {key['name']} of service {service.name}: keep it, it is shown this once",
            file=sys.stderr,
        )
    elif args.key_action == "delete":
        service.keys.delete(args.key_name)
        print(f"Deleted key {args.key_name} of service {service.name}.")


def _print_batch_runs(runs: list[dict]):
    rows = [
        [
            r["name"],
            r.get("owner", ""),
            r.get("latest", ""),
            f"{r.get('model')}:{r.get('model_version')}",
            r.get("state", ""),
            f"{float(r.get('progress') or 0):.0%}",
            _when(r.get("created")),
            r.get("reason") or "",
        ]
        for r in runs
    ]
    headers = ["NAME", "OWNER", "VERSION", "MODEL", "STATE", "PROGRESS", "CREATED", "REASON"]
    print(format_table(headers, rows, right=(2, 5)))


def cmd_batch(args):
    """Batch inference commands."""
    action = args.action
    inputs = None
    if action == "run":
        try:
            inputs = parse_inputs(args.inputs)
        except ValueError as e:
            _fail(str(e), 2)
    client = _client(args)
    if action == "run":
        try:
            run = client.batch.run(
                args.model,
                args.version,
                inputs=inputs,
                name=args.name,
                flavor=args.flavor,
                workspace=args.workspace,
                description=args.description,
                max_run_seconds=args.max_run_seconds,
            )
        except ValueError as e:
            _fail(str(e), 2)
        print(f"Started batch run {_version_line(run.data)}.")
        if args.follow:
            _follow_job(run)
            run.refresh()
            print(f"Predictions: {run.output} ({run.progress:.0%} of the inputs).")
        else:
            print(f"Follow it: workbench jobs logs {run.name} -f")
        return
    if action == "list":
        _print_batch_runs(client.batch.list(args.workspace, all=args.all))
        return
    run = client.batch.get(args.name, args.owner, args.version)
    if action == "show":
        described = client.batch.describe(args.name, run.owner)
        _print_job(described, run.data)
        print(f"  model:    {run.model} version {run.model_version}")
        print(f"  progress: {run.progress:.0%}")
        print(f"  results:  {run.output} (in your instances' work folder)")
    elif action == "stop":
        data = run.stop()
        print(f"Stopping batch run {_version_line(data)}.")
    elif action == "results":
        for line in run.iter_results():
            print(json.dumps(line))


def _inference_parsers(sub):
    """`workbench models ...`, `workbench services ...`, `workbench batch ...`."""
    url_help = "platform URL (default: the one `workbench login` saved)"

    models = sub.add_parser(
        "models", help="registered models: create, list, show, delete"
    ).add_subparsers(dest="action", required=True)

    def version_settings(p):
        p.add_argument(
            "--format",
            required=True,
            choices=["onnx", "pytorch", "tensorflow", "mindspore", "sklearn", "custom", "image"],
        )
        p.add_argument("--job", help="source: a finished job's output (with --job-version, --path)")
        p.add_argument("--job-version", type=int, help="the job's version (default: its latest)")
        p.add_argument("--instance", help="source: an instance whose storage holds the model")
        p.add_argument("--path", help="the folder or file: in the job (output/model) or storage")
        p.add_argument(
            "--serving-image", help="source: a serving container of your own (port 8080)"
        )
        p.add_argument("--command", help="the serving image's command")
        p.add_argument("--image", help="the image serving the model (default: the format's)")
        p.add_argument("--predictor", help="custom code's FILE:CLASS, e.g. predictor.py:Model")
        p.add_argument(
            "--signature",
            help='inputs and outputs as JSON or @FILE: {"inputs": [...], "outputs": [...]}',
        )

    p = models.add_parser("list", help="your models and your workspaces' models")
    p.add_argument("--workspace", help="only this workspace's models")
    p = models.add_parser("show", help="a model's versions, files and lineage")
    p.add_argument("name")
    p.add_argument("--version", type=int, help="only this version's details")
    p = models.add_parser("create", help="register a model (its version 1)")
    p.add_argument("name")
    version_settings(p)
    p.add_argument("--description")
    p.add_argument("--workspace", help="the workspace the model belongs to (default: default)")
    p = models.add_parser("add-version", help="register a new version of a model")
    p.add_argument("name")
    version_settings(p)
    p = models.add_parser("delete", help="delete a model (all versions) or one --version")
    p.add_argument("name")
    p.add_argument("--version", type=int, help="only this version")
    for action, p in models.choices.items():
        if action not in ("list", "create"):
            p.add_argument("--owner", help="a model of another member of your workspaces")
        p.add_argument("--url", help=url_help)
        p.set_defaults(func=cmd_models)

    services = sub.add_parser(
        "services", help="online services: deploy, call, split traffic, keys, metrics"
    ).add_subparsers(dest="action", required=True)
    p = services.add_parser("list", help="your services and your workspaces' services")
    p.add_argument("--workspace", help="only this workspace's services")
    p = services.add_parser("show", help="a service's state, URL, predictors and replicas")
    p.add_argument("name")
    p = services.add_parser("deploy", help="deploy a model version as a new service")
    p.add_argument("name")
    p.add_argument("--model", required=True, help="one of your models")
    p.add_argument("--version", type=int, required=True, help="its version")
    p.add_argument("--flavor", help="each replica's flavor (default: the platform's)")
    p.add_argument("--replicas", help="N, or MIN-MAX to scale by load (MIN 0: scale to zero)")
    p.add_argument(
        "--target-in-flight", type=int, help="requests in flight per replica to scale at"
    )
    p.add_argument("--public", action="store_true", help="callable by the workspace's members")
    p.add_argument("--scale-to-zero", type=float, help="seconds idle before scaling to zero")
    p.add_argument("--description")
    p.add_argument("--workspace", help="the workspace the service belongs to (default: default)")
    p.add_argument("--wait", action="store_true", help="wait until it is running")
    p.add_argument("--timeout", type=float, default=300, help="seconds --wait waits (default 300)")
    p = services.add_parser("update", help="change the traffic split, description or access")
    p.add_argument("name")
    p.add_argument(
        "--traffic",
        help="VERSION=PERCENT,... e.g. 1=90,2=10 (a new version starts as a canary)",
    )
    p.add_argument("--description")
    p.add_argument(
        "--access", choices=["public", "private"], help="public: the workspace may call it"
    )
    for action, what in (
        ("promote", "the canary takes all traffic"),
        ("rollback", "remove the canary; the stable version takes all traffic"),
        ("start", "start a stopped service"),
        ("stop", "stop every replica (keeps the service and its keys)"),
        ("delete", "delete a service with its replicas and keys"),
    ):
        p = services.add_parser(action, help=what)
        p.add_argument("name")
    p = services.add_parser("predict", help="call a service: v1 instances or a v2 request")
    p.add_argument("name")
    p.add_argument(
        "--data",
        required=True,
        help='JSON or @FILE: a list of instances, {"instances": [...]} or {"inputs": [...]} (v2)',
    )
    p.add_argument("--key", help="call with this access key instead of your token")
    p = services.add_parser("metrics", help="requests, errors and latency per predictor")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="the whole answer, as JSON")
    p.add_argument("--prometheus", action="store_true", help="Prometheus' text format")
    p = services.add_parser("logs", help="a replica's log")
    p.add_argument("name")
    p.add_argument("--replica", help="the replica's id (default: the first)")
    for action, p in services.choices.items():
        if action not in ("list", "deploy"):
            p.add_argument("--owner", help="a service of another member of your workspaces")
        p.add_argument("--url", help=url_help)
        p.set_defaults(func=cmd_services)
    keys = services.add_parser(
        "keys", help="a service's access keys: create, list, delete"
    ).add_subparsers(dest="key_action", required=True)
    p = keys.add_parser("list", help="a service's keys (names and prefixes)")
    p.add_argument("service")
    p = keys.add_parser("create", help="a new key, printed once")
    p.add_argument("service")
    p.add_argument("key_name", metavar="name")
    p = keys.add_parser("delete", help="revoke a key")
    p.add_argument("service")
    p.add_argument("key_name", metavar="name")
    for p in keys.choices.values():
        p.add_argument("--owner", help="a service of another member of your workspaces")
        p.add_argument("--url", help=url_help)
        p.set_defaults(func=cmd_service_keys)

    batch = sub.add_parser(
        "batch", help="batch inference: a model version over a folder of inputs"
    ).add_subparsers(dest="action", required=True)
    p = batch.add_parser("run", help="run a model version over an instance's input folder")
    p.add_argument("name", nargs="?", help="the run's name (default: <model>-batch)")
    p.add_argument("--model", required=True, help="one of your models")
    p.add_argument("--version", type=int, help="its version (default: the latest)")
    p.add_argument(
        "--inputs", required=True, metavar="INSTANCE:PATH", help="a folder of an instance's storage"
    )
    p.add_argument("--flavor", help="the run's flavor (default: the platform's)")
    p.add_argument("--workspace", help="the workspace the run belongs to (default: default)")
    p.add_argument("--max-run-seconds", type=int, help="stop after this long (0: never)")
    p.add_argument("--description")
    p.add_argument("--follow", "-f", action="store_true", help="print the log until it ends")
    p = batch.add_parser("list", help="your batch runs and your workspaces'")
    p.add_argument("--workspace", help="only this workspace's runs")
    p.add_argument("--all", action="store_true", help="everyone's runs (administrators)")
    for action, what in (
        ("show", "a run's versions, model, progress and results file"),
        ("stop", "stop a run"),
        ("results", "print a run's predictions (JSON lines)"),
    ):
        p = batch.add_parser(action, help=what)
        p.add_argument("name")
        p.add_argument("--owner", help="a run of another member of your workspaces")
        p.add_argument("--version", type=int, help="the version (default: the latest)")
    for p in batch.choices.values():
        p.add_argument("--url", help=url_help)
        p.set_defaults(func=cmd_batch)


# --- datasets (through the platform API) --------------------------------------------------


def _dataset_name(text: str) -> tuple[str | None, str]:
    """(owner, name) of NAME or OWNER/NAME; exit 2 when malformed."""
    owner, name = split_name(text)
    if not name or owner == "" or "/" in name:
        _fail(f"{text!r} is not a dataset's NAME or OWNER/NAME", 2)
    return owner, name


def _dataset(client, text: str):
    owner, name = _dataset_name(text)
    return client.datasets.get(name, owner)


def _csv_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _print_json(value) -> None:
    print(json.dumps(value, indent=1))


def _print_datasets(datasets: list[dict]):
    rows = [
        [
            d["name"],
            d.get("owner", ""),
            d.get("type", ""),
            d.get("samples", 0),
            _size(d.get("size") or 0),
            d.get("workspace", ""),
            _when(d.get("updated")),
            d.get("description") or "",
        ]
        for d in datasets
    ]
    headers = ["NAME", "OWNER", "TYPE", "SAMPLES", "SIZE", "WORKSPACE", "UPDATED", "DESCRIPTION"]
    print(format_table(headers, rows, right=(3, 4)))


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _print_labels(labels: list[dict]):
    if not labels:
        print("No labels yet: add one with `workbench datasets label add DATASET LABEL`.")
        return
    rows = [[label["name"], label.get("color", ""), label.get("key", "")] for label in labels]
    print(format_table(["LABEL", "COLOR", "KEY"], rows))


def _print_stats(stats: dict):
    fields = ("samples", "labelled", "unlabelled", "prelabelled", "to_review", "accepted")
    rows = [[field, stats.get(field, 0)] for field in (*fields, "rejected")]
    print(format_table(["SAMPLES", "COUNT"], rows, right=(1,)))
    per_label = stats.get("per_label") or {}
    if per_label:
        print()
        rows = [[label, count] for label, count in sorted(per_label.items())]
        print(format_table(["LABEL", "ANNOTATIONS"], rows, right=(1,)))


def _print_versions(versions: list[dict]):
    rows = [
        [
            v["version"],
            v.get("state", ""),
            v.get("samples", 0),
            v.get("labelled", ""),
            v.get("train_ratio", ""),
            _when(v.get("created")),
            v.get("reason") or v.get("description") or "",
        ]
        for v in versions
    ]
    headers = ["VERSION", "STATE", "SAMPLES", "LABELLED", "TRAIN", "CREATED", "DESCRIPTION"]
    print(format_table(headers, rows, right=(0, 2, 3)))


def _print_dataset(data: dict):
    description = f": {data['description']}" if data.get("description") else ""
    where = f"workspace {data.get('workspace')}"
    print(f"Dataset {data['name']} of {data['owner']}, {where}{description}")
    multi = ", several labels a sample" if data.get("multi_label") else ""
    print(f"  type:     {data.get('type')}{multi}")
    print(f"  samples:  {data.get('samples', 0)} ({_size(data.get('size') or 0)})")
    stats = data.get("stats") or {}
    if stats:
        counts = ", ".join(
            f"{stats.get(k, 0)} {k.replace('_', ' ')}"
            for k in ("labelled", "unlabelled", "prelabelled", "to_review")
        )
        print(f"  status:   {counts}")
    print()
    _print_labels(data.get("labels") or [])
    versions = data.get("versions") or []
    if versions:
        print()
        _print_versions(sorted(versions, key=lambda v: v["version"]))


def _annotation_text(annotations: list[dict]) -> str:
    parts = []
    for a in annotations or []:
        where = a.get("box") or a.get("span")
        text = a.get("label", "?")
        if where:
            text += str(list(where))
        if a.get("confidence") is not None:
            text += f" {a['confidence']:.2f}"
        parts.append(text)
    return ", ".join(parts)


def _print_samples(samples: list[dict]):
    rows = [
        [
            s["id"],
            s.get("key", ""),
            s.get("status", ""),
            s.get("review") or "",
            s.get("assignee") or "",
            _annotation_text(s.get("annotations") or []),
        ]
        for s in samples
    ]
    print(format_table(["ID", "KEY", "STATUS", "REVIEW", "ASSIGNEE", "ANNOTATIONS"], rows, (0,)))


def _print_diff(diff: dict, version: int, against: int):
    added, removed = diff.get("added") or [], diff.get("removed") or []
    relabelled = diff.get("relabelled") or []
    print(
        f"Version {version} against {against}: {len(added)} added, {len(removed)} removed, "
        f"{len(relabelled)} relabelled."
    )
    for key in added:
        print(f"+ {key}")
    for key in removed:
        print(f"- {key}")
    for change in relabelled:
        before = _annotation_text(change.get("before") or []) or "(none)"
        after = _annotation_text(change.get("after") or []) or "(none)"
        print(f"~ {change['key']}: {before} -> {after}")


def _print_tasks(tasks: list[dict]):
    rows = []
    for t in tasks:
        progress = t.get("progress") or {}
        assigned = sum(p.get("assigned", 0) for p in progress.values())
        labelled = sum(p.get("labelled", 0) for p in progress.values())
        accepted = sum(p.get("accepted", 0) for p in progress.values())
        rows.append(
            [
                t["name"],
                t.get("state", ""),
                ", ".join(t.get("labellers") or []),
                ", ".join(t.get("reviewers") or []),
                f"{labelled}/{assigned}",
                accepted,
            ]
        )
    headers = ["TASK", "STATE", "LABELLERS", "REVIEWERS", "LABELLED", "ACCEPTED"]
    print(format_table(headers, rows, right=(4, 5)))


def _print_task(task: dict):
    print(f"Task {task['name']} ({task.get('state', '')})")
    rows = [
        [
            member,
            p.get("assigned", 0),
            p.get("labelled", 0),
            p.get("to_review", 0),
            p.get("accepted", 0),
            p.get("rejected", 0),
        ]
        for member, p in sorted((task.get("progress") or {}).items())
    ]
    headers = ["MEMBER", "ASSIGNED", "LABELLED", "TO REVIEW", "ACCEPTED", "REJECTED"]
    print(format_table(headers, rows, right=(1, 2, 3, 4, 5)))


def _run_line(run) -> str:
    reason = f": {run['reason']}" if run.get("reason") else ""
    return (
        f"run {run['id']} ({run.get('state')}{reason}): {run.get('done', 0)} of "
        f"{run.get('total', 0)} samples, {run.get('accepted', 0)} accepted"
    )


def _check_paths(paths) -> None:
    """Exit 2 naming a local path that does not exist, before any request."""
    for path in paths:
        if not os.path.exists(os.path.expanduser(path)):
            _fail(f"No such file or folder: {path}", 2)


def cmd_datasets(args):
    """Dataset commands."""
    action = args.action
    # what is checked before any request
    labels = None
    if action == "create":
        if args.folder is not None and not os.path.isdir(os.path.expanduser(args.folder)):
            _fail(f"No such folder: {args.folder}", 2)
        labels = [*(args.label or []), *_csv_list(args.labels)]
    if action == "upload":
        if args.key and len(args.paths) > 1:
            _fail("--key names one file: give a single PATH with it", 2)
        _check_paths(args.paths)
    if action == "import":
        if (args.path is None) == (args.instance is None):
            _fail("give a local PATH, or --instance INSTANCE with --source-path", 2)
        if args.path is not None:
            _check_paths([args.path])
        elif not args.source_path:
            _fail("--instance needs --source-path: the folder in its storage", 2)
    if action != "list":
        _dataset_name(args.name)
    client = _client(args)
    try:
        _dataset_action(client, args, labels)
    except DatasetInputError as e:
        _fail(e.message, 2)


def _dataset_action(client, args, labels):
    action = args.action
    if action == "list":
        datasets = client.datasets.list(args.workspace, all=args.all)
        if args.json:
            _print_json(datasets)
        else:
            _print_datasets(datasets)
        return
    if action == "create":
        owner, name = _dataset_name(args.name)
        if owner:
            _fail("a new dataset is yours: give its NAME without an owner", 2)
        dataset = client.datasets.create(
            name,
            args.type,
            labels=labels,
            folder=args.folder,
            multi_label=args.multi_label,
            description=args.description or "",
            workspace=args.workspace,
        )
        if args.json:
            _print_json(dataset.data)
            return
        labels = f"{len(dataset.labels)} label{'' if len(dataset.labels) == 1 else 's'}"
        print(
            f"Created dataset {dataset.name} ({dataset.type}) with "
            f"{dataset.data.get('samples', 0)} samples and {labels}."
        )
        if not args.folder:
            print(f"Add samples: workbench datasets upload {dataset.name} FOLDER")
        return
    dataset = _dataset(client, args.name)
    what = f"{dataset.owner}/{dataset.name}"
    if action == "show":
        if args.json:
            _print_json(dataset.data)
        else:
            _print_dataset(dataset.data)
    elif action == "upload":
        totals = {"added": 0, "replaced": 0, "unchanged": 0, "samples": 0}
        for path in args.paths:
            answer = dataset.upload(path, key=args.key)
            for field in ("added", "replaced", "unchanged"):
                totals[field] += answer.get(field, 0)
            totals["samples"] = answer["samples"]
        replaced = f", {totals['replaced']} replaced" if totals["replaced"] else ""
        print(
            f"Uploaded to {what}: {totals['added']} added{replaced}, {totals['unchanged']} "
            f"unchanged; {totals['samples']} samples in all."
        )
    elif action == "import":
        source = args.path
        if args.instance:
            source = {"instance": args.instance, "path": args.source_path}
        answer = dataset.import_(source, args.format) or {}
        print(
            f"Imported {args.format} into {what}: {answer.get('added', 0)} added, "
            f"{answer.get('annotated', 0)} annotated; {answer.get('samples', 0)} samples in all."
        )
    elif action == "samples":
        samples = list(
            dataset.samples(
                status=args.status,
                label=args.label,
                review=args.review,
                assignee=args.assignee,
                task=args.task,
                limit=args.limit,
            )
        )
        if args.json:
            _print_json(samples)
        elif samples:
            _print_samples(samples)
        else:
            print("No samples match.")
    elif action == "stats":
        stats = dataset.stats()
        if args.json:
            _print_json(stats)
        else:
            _print_stats(stats)
    elif action == "publish":
        version = dataset.publish(
            description=args.description, train_ratio=args.train_ratio, seed=args.seed
        )
        if args.json:
            _print_json(version.data)
            return
        data = version.data
        print(
            f"Published {what} version {version.version} ({version.state}): "
            f"{data.get('samples', 0)} samples, {data.get('labelled', 0)} labelled."
        )
        print(f'Train on it: inputs {{"dataset": "{what}", "version": {version.version}}}')
    elif action == "versions":
        versions = dataset.versions()
        if args.json:
            _print_json(versions)
        elif versions:
            _print_versions(versions)
        else:
            print(f"{what} has no versions yet: `workbench datasets publish {args.name}`.")
    elif action == "diff":
        diff = dataset.diff(args.version, args.against)
        if args.json:
            _print_json(diff)
        else:
            _print_diff(diff, args.version, args.against)
    elif action == "export":
        target = dataset.export(args.format, args.version, args.to)
        which = "as it is now" if args.version is None else f"version {args.version}"
        size = os.path.getsize(target)
        print(f"Exported {what} {which} as {args.format} to {target} ({_size(size)}).")
    elif action == "delete":
        if args.version is None:
            dataset.delete()
            print(f"Deleted dataset {what} with its samples and versions.")
        else:
            dataset.delete_version(args.version)
            print(f"Deleted version {args.version} of dataset {what}.")
    elif action == "autolabel":
        _autolabel(dataset, args)


def _autolabel(dataset, args):
    if not args.service:
        runs = dataset.autolabel_runs()
        if args.json:
            _print_json(runs)
        elif runs:
            for run in runs:
                print(_run_line(run))
        else:
            print("No auto-labelling runs yet: give --service OWNER/NAME to start one.")
        return
    run = dataset.autolabel(args.service, threshold=args.threshold, limit=args.limit)
    print(f"Started auto-labelling {_run_line(run.data)}.")
    if not args.wait:
        print(f"See it: workbench datasets autolabel {args.name}")
        return
    shown = {}

    def show(current):
        line = _run_line(current.data)
        if shown.get("line") != line:
            print(line, flush=True)
            shown["line"] = line

    data = run.wait(on_progress=show)
    if data.get("state") != "done":
        sys.exit(1)


def cmd_dataset_labels(args):
    """The label set of a dataset."""
    client = _client(args)
    dataset = _dataset(client, args.name)
    action = args.label_action
    if action == "list":
        _print_labels(dataset.labels)
        return
    if action == "add":
        labels = dataset.add_label(args.label, color=args.color, key=args.key)
        print(f"Added label {args.label} to {dataset.name}.")
    elif action == "rename":
        labels = dataset.update_label(args.label, name=args.new_name)
        print(f"Renamed label {args.label} of {dataset.name} to {args.new_name}.")
    elif action == "update":
        if args.color is None and args.key is None:
            _fail("nothing to change: give --color or --key", 2)
        labels = dataset.update_label(args.label, color=args.color, key=args.key)
        print(f"Changed label {args.label} of {dataset.name}.")
    else:
        labels = dataset.delete_label(args.label, force=args.force)
        print(f"Deleted label {args.label} of {dataset.name}.")
    _print_labels(labels)


def cmd_dataset_tasks(args):
    """Labelling tasks of a dataset."""
    action = args.task_action
    selection = None
    if action == "create":
        if not _csv_list(args.labellers):
            _fail("--labellers needs at least one user name", 2)
        if args.ids and args.status:
            _fail("give --ids or --status, not both", 2)
        if args.ids:
            try:
                selection = [int(i) for i in _csv_list(args.ids)]
            except ValueError:
                _fail(f"--ids {args.ids!r} is not a comma-separated list of sample ids", 2)
        elif args.status:
            selection = args.status
    client = _client(args)
    dataset = _dataset(client, args.name)
    if action == "list":
        tasks = dataset.tasks()
        if args.json:
            _print_json(tasks)
        elif tasks:
            _print_tasks(tasks)
        else:
            print(f"{dataset.name} has no labelling tasks.")
    elif action == "show":
        task = dataset.task(args.task)
        if args.json:
            _print_json(task)
        else:
            _print_task(task)
    elif action == "create":
        task = dataset.create_task(
            args.task,
            _csv_list(args.labellers),
            _csv_list(args.reviewers),
            samples=selection,
            description=args.description,
        )
        assigned = sum(p.get("assigned", 0) for p in (task.get("progress") or {}).values())
        print(f"Created task {task['name']} of {dataset.name}: {assigned} samples dealt out.")
    elif action == "delete":
        dataset.delete_task(args.task)
        print(f"Deleted task {args.task} of {dataset.name}; its samples keep their labels.")


def _dataset_parsers(sub):
    """`workbench datasets ...`: list, create, show, upload, import, label, samples, stats,
    publish, versions, diff, export, delete, tasks, autolabel."""
    url_help = "platform URL (default: the one `workbench login` saved)"
    name_help = "the dataset: NAME (yours) or OWNER/NAME"
    datasets = sub.add_parser(
        "datasets", help="datasets: upload, label, review, publish versions, export"
    ).add_subparsers(dest="action", required=True)
    p = datasets.add_parser("list", help="your datasets, your workspaces' and your tasks'")
    p.add_argument("--workspace", help="only this workspace's datasets")
    p.add_argument("--all", action="store_true", help="everyone's datasets (administrators)")
    p = datasets.add_parser("create", help="make a dataset, from a local folder of files")
    p.add_argument("name")
    p.add_argument("--type", required=True, choices=TYPES, help="what its samples are")
    p.add_argument("--label", action="append", help="a label (repeat for more); or --labels a,b,c")
    p.add_argument("--labels", help="labels, comma-separated")
    p.add_argument("--folder", help="a local folder whose files become the samples")
    p.add_argument(
        "--multi-label", action="store_true", help="classification: several labels a sample"
    )
    p.add_argument("--description")
    p.add_argument("--workspace", help="the workspace it belongs to (default: default)")
    p = datasets.add_parser("show", help="a dataset's type, labels, counts and versions")
    p.add_argument("name", help=name_help)
    p = datasets.add_parser("upload", help="add local files, folders or archives as samples")
    p.add_argument("name", help=name_help)
    p.add_argument("paths", nargs="+", metavar="PATH", help="a folder, file, .zip or .tar(.gz)")
    p.add_argument("--key", help="one file: its path in the dataset (default: its name)")
    p = datasets.add_parser("import", help="add samples with annotations in a format")
    p.add_argument("name", help=name_help)
    p.add_argument("path", nargs="?", help="a local folder or archive")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--instance", help="copy from this instance's storage instead")
    p.add_argument("--source-path", help="with --instance: the folder in its storage")
    p = datasets.add_parser("samples", help="list samples, filtered")
    p.add_argument("name", help=name_help)
    p.add_argument("--status", choices=["unlabelled", "labelled", "prelabelled"])
    p.add_argument("--label", help="only samples with this label")
    p.add_argument("--review", choices=["to_review", "accepted", "rejected"])
    p.add_argument("--assignee", help="only samples assigned to this user")
    p.add_argument("--task", help="only samples of this labelling task")
    p.add_argument("--limit", type=int, default=50, help="at most so many (default 50)")
    p = datasets.add_parser("stats", help="samples by status and annotations by label")
    p.add_argument("name", help=name_help)
    p = datasets.add_parser("publish", help="publish the samples as a new version")
    p.add_argument("name", help=name_help)
    p.add_argument("--description")
    p.add_argument("--train-ratio", type=float, help="share in the train split (default 0.8)")
    p.add_argument("--seed", type=int, help="seed of the split (same seed, same split)")
    p = datasets.add_parser("versions", help="a dataset's published versions")
    p.add_argument("name", help=name_help)
    p = datasets.add_parser("diff", help="what changed between two versions")
    p.add_argument("name", help=name_help)
    p.add_argument("version", type=int)
    p.add_argument("against", type=int, help="the version to compare with")
    p = datasets.add_parser("export", help="write the samples or a version as a zip")
    p.add_argument("name", help=name_help)
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--version", type=int, help="a published version (default: as it is now)")
    p.add_argument("--to", help="the zip file, or a folder to put it in (default: here)")
    p = datasets.add_parser("delete", help="delete a dataset, or one --version")
    p.add_argument("name", help=name_help)
    p.add_argument("--version", type=int, help="only this version")
    p = datasets.add_parser("autolabel", help="pre-label with a deployed service; list runs")
    p.add_argument("name", help=name_help)
    p.add_argument("--service", help="the service: NAME or OWNER/NAME (none: list the runs)")
    p.add_argument("--threshold", type=float, help="confidence at which a pre-label is kept")
    p.add_argument("--limit", type=int, help="at most so many samples")
    p.add_argument("--wait", action="store_true", help="follow the run until it ends")
    for action, p in datasets.choices.items():
        if action not in ("upload", "import", "export", "delete"):
            p.add_argument("--json", action="store_true", help="the answer as JSON")
        p.add_argument("--url", help=url_help)
        p.set_defaults(func=cmd_datasets)

    labels = datasets.add_parser(
        "label", help="a dataset's labels: list, add, rename, update, delete"
    ).add_subparsers(dest="label_action", required=True)
    p = labels.add_parser("list", help="the label set")
    p.add_argument("name", help=name_help)
    p = labels.add_parser("add", help="add a label")
    p.add_argument("name", help=name_help)
    p.add_argument("label")
    p.add_argument("--color", help="#rrggbb (default: the next of the palette)")
    p.add_argument("--key", help="its keyboard shortcut: one of a-z, 0-9")
    p = labels.add_parser("rename", help="rename a label (its annotations follow)")
    p.add_argument("name", help=name_help)
    p.add_argument("label")
    p.add_argument("new_name", metavar="new-name")
    p = labels.add_parser("update", help="change a label's color or key")
    p.add_argument("name", help=name_help)
    p.add_argument("label")
    p.add_argument("--color", help="#rrggbb")
    p.add_argument("--key", help="one of a-z, 0-9")
    p = labels.add_parser("delete", help="delete a label")
    p.add_argument("name", help=name_help)
    p.add_argument("label")
    p.add_argument("--force", action="store_true", help="remove the annotations that use it")
    for p in labels.choices.values():
        p.add_argument("--url", help=url_help)
        p.set_defaults(func=cmd_dataset_labels)

    tasks = datasets.add_parser(
        "tasks", help="labelling tasks: list, show, create, delete"
    ).add_subparsers(dest="task_action", required=True)
    p = tasks.add_parser("list", help="a dataset's tasks and their progress")
    p.add_argument("name", help=name_help)
    p.add_argument("--json", action="store_true", help="the answer as JSON")
    p = tasks.add_parser("show", help="a task's progress per member")
    p.add_argument("name", help=name_help)
    p.add_argument("task")
    p.add_argument("--json", action="store_true", help="the answer as JSON")
    p = tasks.add_parser("create", help="deal samples out to labellers, with reviewers")
    p.add_argument("name", help=name_help)
    p.add_argument("task")
    p.add_argument("--labellers", required=True, help="user names, comma-separated")
    p.add_argument("--reviewers", help="user names, comma-separated")
    p.add_argument("--status", choices=["unlabelled", "labelled", "prelabelled"])
    p.add_argument("--ids", help="these sample ids, comma-separated")
    p.add_argument("--description")
    p = tasks.add_parser("delete", help="end a task; its samples keep their labels")
    p.add_argument("name", help=name_help)
    p.add_argument("task")
    for p in tasks.choices.values():
        p.add_argument("--url", help=url_help)
        p.set_defaults(func=cmd_dataset_tasks)


# --- the gallery (through the platform API) -------------------------------------------------


def _asset_id(text: str) -> int:
    """An asset's id on the command line (argparse type): a number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a gallery asset's id (a number: see `workbench gallery search`)"
        )
    return value


def _text_argument(text: str | None, what: str) -> str | None:
    """Text from the command line, or from a file given as @PATH; exit 2 when unreadable."""
    if text is None or not text.startswith("@"):
        return text
    path = Path(os.path.expanduser(text[1:]))
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        _fail(f"{what}: cannot read {path}: {e}", 2)


def _tags_argument(values: list[str] | None) -> list[str] | None:
    """--tag A --tag B,C -> [A, B, C]; None when not given."""
    if values is None:
        return None
    return [tag for value in values for tag in _csv_list(value)]


def _print_assets(found) -> None:
    rows = [
        [
            a["id"],
            a.get("kind", ""),
            a.get("title", ""),
            a.get("owner", ""),
            a.get("version", ""),
            ",".join(a.get("tags") or []),
            a.get("uses", 0),
            f"{a.get('stars', 0)}{'*' if a.get('starred') else ''}",
            _when(a.get("updated")),
        ]
        for a in found
    ]
    if not rows:
        print("No gallery asset matches: publish one with `workbench gallery publish`.")
        return
    headers = ["ID", "KIND", "TITLE", "OWNER", "VERSION", "TAGS", "USES", "STARS", "UPDATED"]
    print(format_table(headers, rows, right=(0, 4, 6, 7)))
    total = getattr(found, "total", len(found))
    tags = getattr(found, "tags", {}) or {}
    more = f" (the first {len(found)} shown: narrow the search or use --limit)"
    print(f"\n{total} asset(s){more if total > len(found) else ''}.")
    if tags:
        ranked = sorted(tags.items(), key=lambda item: (-item[1], item[0]))
        print("Tags: " + ", ".join(f"{tag} ({count})" for tag, count in ranked))


def _print_asset(asset: dict) -> None:
    print(f"Gallery asset {asset['id']}: {asset.get('title', '')}")
    where = asset.get("visibility", "")
    if where == "workspace":
        where = f"workspace {asset.get('workspace')}"
    starred = ", starred by you" if asset.get("starred") else ""
    facts = [
        ("kind", asset.get("kind", "")),
        ("owner", asset.get("owner", "")),
        ("visible to", "everyone" if where == "everyone" else f"members of {where}"),
        ("tags", ", ".join(asset.get("tags") or []) or "-"),
        ("version", f"{asset.get('version')} ({_size(asset.get('size') or 0)})"),
        ("used", f"{asset.get('uses', 0)} time(s); {asset.get('stars', 0)} star(s){starred}"),
        ("published", _when(asset.get("created"))),
        ("updated", _when(asset.get("updated"))),
    ]
    for name, value in facts:
        print(f"  {name + ':':<11} {value}")
    meta = asset.get("meta") or {}
    for key in sorted(meta):
        value = meta[key]
        if key == "preview_sha256" or value in (None, "", [], {}):
            continue
        if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
            value = ", ".join(str(v) for v in value)
        print(f"  {key + ':':<11} {value if isinstance(value, str) else json.dumps(value)}")
    if asset.get("description"):
        print()
        print(asset["description"].rstrip())
    versions = sorted(asset.get("versions") or [], key=lambda v: v["version"])
    if versions:
        print()
        rows = [
            [
                v["version"],
                _when(v.get("created")),
                v.get("files", ""),
                _size(v.get("size") or 0),
                json.dumps(v["source"]) if v.get("source") else "",
            ]
            for v in versions
        ]
        print(format_table(["VERSION", "CREATED", "FILES", "SIZE", "SOURCE"], rows, (0, 2, 3)))
    print(f"\nTake it: workbench gallery use {asset['id']}")


def _print_use(answer: dict) -> None:
    kind = answer.get("kind")
    if kind == "notebook":
        print(f"Copied {len(answer.get('files') or [])} file(s) into {answer['path']}.")
        if answer.get("notebook_path"):
            print(f"Open {answer['notebook_path']}.")
    elif kind == "image":
        image = answer.get("image")
        print(f"Image {image} is yours to use.")
        print(f"Start an instance with it: workbench instances create NAME --image {image}")
    elif kind == "model":
        model, version = answer.get("model", ""), answer.get("version")
        name = model.rpartition("/")[2]
        print(f"Model {model} version {version} is yours.")
        print(f"Deploy it: workbench services deploy NAME --model {name} --version {version}")
    elif kind == "dataset":
        dataset, version = answer.get("dataset", ""), answer.get("version")
        state = f" ({answer['state']})" if answer.get("state") not in (None, "ready") else ""
        print(f"Dataset {dataset} version {version}{state} is yours: a training input.")
    else:
        _print_json(answer)


def _gallery_source(args) -> dict:
    """publish's source from PATH / --image / --model / --dataset; exit 2 unless one."""
    given = [
        name
        for name, value in (
            ("PATH", args.path),
            ("--image", args.image),
            ("--model", args.model),
            ("--dataset", args.dataset),
        )
        if value
    ]
    if len(given) != 1:
        but = f" (not {' and '.join(given)})" if given else ""
        _fail(
            "give one thing to publish: a notebook or folder PATH (with --instance outside an "
            f"instance), --image IMAGE, --model MODEL or --dataset DATASET{but}",
            2,
        )
    if args.version is not None and (args.path or args.image):
        _fail("--version is for --model and --dataset", 2)
    if args.notebook and not args.path:
        _fail("--notebook names the main notebook of a published folder PATH", 2)
    if args.instance and not args.path:
        _fail("--instance goes with a notebook or folder PATH in its storage", 2)
    return {
        "path": args.path,
        "image": args.image,
        "model": args.model,
        "dataset": args.dataset,
        "version": args.version,
        "instance": args.instance,
        "notebook": args.notebook,
    }


def cmd_gallery(args):
    """Gallery commands."""
    from workbench.resources.gallery import GalleryInputError

    action = args.action
    # what is checked before any request
    description = _text_argument(getattr(args, "description", None), "--description")
    tags = _tags_argument(getattr(args, "tag", None))
    source = {}
    if action == "publish":
        source = _gallery_source(args)
        if args.asset is None and not (args.title or "").strip():
            _fail("--title is required (1-120 characters): what the asset is, in a line", 2)
        if args.asset is not None and (args.title or args.description or args.tag):
            _fail(
                "--asset publishes a new version: change the title, description or tags "
                "with `workbench gallery update`",
                2,
            )
    if action == "update":
        if tags is None and args.no_tags:
            tags = []
        elif args.no_tags:
            _fail("give --tag or --no-tags, not both", 2)
        changes = [args.title, description, tags, args.visibility, args.workspace]
        if all(value is None for value in changes):
            _fail(
                "nothing to change: give --title, --description, --tag, --no-tags, "
                "--visibility or --workspace",
                2,
            )
    client = _client(args)
    try:
        _gallery_action(client, args, source, description, tags)
    except GalleryInputError as e:
        _fail(e.message, 2)


def _gallery_action(client, args, source, description, tags):
    action = args.action
    gallery = client.gallery
    if action == "search":
        found = gallery.search(
            args.query,
            tag=tags,
            kind=args.kind,
            sort=args.sort,
            mine=args.mine,
            owner=args.owner,
            limit=args.limit,
        )
        if args.json:
            _print_json({"assets": list(found), "total": found.total, "tags": found.tags})
        else:
            _print_assets(found)
    elif action == "show":
        asset = gallery.get(args.id)
        if args.json:
            _print_json(asset)
        else:
            _print_asset(asset)
    elif action == "publish":
        asset = gallery.publish(
            **source,
            title=args.title,
            description=description or "",
            tags=tags or [],
            visibility=args.visibility,
            workspace=args.workspace,
            asset=args.asset,
            notes=args.notes,
        )
        what = "version 1 of" if args.asset is None else f"version {asset.get('version')} of"
        print(
            f"Published {what} gallery asset {asset['id']} ({asset.get('kind')}): {asset['title']}"
        )
        print(f"Show it: workbench gallery show {asset['id']}")
    elif action == "use":
        _print_use(gallery.use(args.id, args.version, name=args.name, path=args.path))
    elif action in ("star", "unstar"):
        asset = getattr(gallery, action)(args.id)
        done = "Starred" if action == "star" else "Took your star back from"
        print(f"{done} gallery asset {asset['id']} ({asset.get('stars', 0)} star(s)).")
    elif action == "update":
        asset = gallery.update(
            args.id,
            title=args.title,
            description=description,
            tags=tags,
            visibility=args.visibility,
            workspace=args.workspace,
        )
        print(f"Updated gallery asset {asset['id']}: {asset['title']}")
    elif action == "unpublish":
        gallery.unpublish(args.id)
        print(f"Unpublished gallery asset {args.id} and all its versions.")


def _gallery_parsers(sub):
    """`workbench gallery ...`: search, show, publish, use, star, unstar, update, unpublish."""
    gallery = sub.add_parser(
        "gallery", help="share notebooks, images, models and datasets; find and use others'"
    ).add_subparsers(dest="action", required=True)

    def tag_option(p, what: str):
        p.add_argument("--tag", action="append", metavar="TAG", help=what)

    p = gallery.add_parser("search", help="assets you may see: search, filter, sort")
    p.add_argument("query", nargs="?", help="words to find in titles, descriptions and tags")
    tag_option(p, "only assets with this tag (repeatable, or A,B: all must match)")
    p.add_argument("--kind", choices=["notebook", "image", "model", "dataset"])
    p.add_argument(
        "--sort", choices=["newest", "most_used", "stars"], default="newest", help="default newest"
    )
    p.add_argument("--mine", action="store_true", help="only the assets you published")
    p.add_argument("--owner", help="only the assets this user published")
    p.add_argument(
        "--limit", type=int, default=50, help="how many to show (default 50, at most 100)"
    )
    p.add_argument("--json", action="store_true", help="the API's answer, as JSON")
    p = gallery.add_parser("show", help="an asset: description, versions, how to use it")
    p.add_argument("id", type=_asset_id)
    p.add_argument("--json", action="store_true", help="the API's answer, as JSON")
    p = gallery.add_parser(
        "publish", help="publish a notebook or folder, a saved image, a model or dataset version"
    )
    p.add_argument(
        "path",
        nargs="?",
        help="a .ipynb notebook or a folder holding one, in an instance's storage (inside an "
        "instance: a path here; elsewhere relative to --instance's storage)",
    )
    p.add_argument("--instance", help="the instance whose storage holds PATH")
    p.add_argument("--notebook", help="the main notebook of a folder (default: the first)")
    p.add_argument("--image", help="one of your saved images: NAME:TAG or saved:YOU/NAME:TAG")
    p.add_argument("--model", help="one of your models (with --version; default its latest)")
    p.add_argument("--dataset", help="one of your datasets (with --version; default its latest)")
    p.add_argument("--version", type=int, help="the model's or dataset's version")
    p.add_argument("--title", help="1-120 characters (required for a new asset)")
    p.add_argument("--description", help="Markdown, or @FILE to read it from a file")
    tag_option(p, "a tag: lower-case letters, digits and '-' (repeatable, or A,B)")
    p.add_argument(
        "--visibility",
        choices=["everyone", "workspace"],
        default="everyone",
        help="who sees it: everyone (default) or the members of --workspace",
    )
    p.add_argument(
        "--workspace", help="the workspace whose members see it (--visibility workspace)"
    )
    p.add_argument("--asset", type=_asset_id, help="publish a new version of this asset of yours")
    p.add_argument("--notes", help="with --asset: what changed in this version")
    p = gallery.add_parser("use", help="take an asset: files, an image, a model or a dataset")
    p.add_argument("id", type=_asset_id)
    p.add_argument("--version", type=int, help="the version (default: the latest)")
    p.add_argument("--name", help="a model or dataset: your new one's name (default: the same)")
    p.add_argument(
        "--path", help="a notebook case: the folder to copy it into (default ./gallery/TITLE)"
    )
    for action, what in (("star", "star an asset"), ("unstar", "take your star back")):
        p = gallery.add_parser(action, help=what)
        p.add_argument("id", type=_asset_id)
    p = gallery.add_parser(
        "update", help="change an asset's title, description, tags or visibility"
    )
    p.add_argument("id", type=_asset_id)
    p.add_argument("--title")
    p.add_argument("--description", help="Markdown, or @FILE to read it from a file")
    tag_option(p, "the tags, replacing the old ones (repeatable, or A,B)")
    p.add_argument("--no-tags", action="store_true", help="remove every tag")
    p.add_argument("--visibility", choices=["everyone", "workspace"])
    p.add_argument("--workspace", help="the workspace whose members see it")
    p = gallery.add_parser("unpublish", help="remove an asset with all its versions")
    p.add_argument("id", type=_asset_id)
    for p in gallery.choices.values():
        p.add_argument("--url", help="platform URL (default: the one `workbench login` saved)")
        p.set_defaults(func=cmd_gallery)


# --- kubernetes ------------------------------------------------------------------------


def cmd_kubernetes_render(args):
    from deploy.bundle import run_render

    code = run_render(args.values, args.namespace, args.secrets)
    if code:
        sys.exit(code)


def _kubernetes_parsers(sub):
    kube = sub.add_parser("kubernetes", help="deploy the platform on Kubernetes").add_subparsers(
        dest="action", required=True
    )
    p = kube.add_parser(
        "render",
        help="print every manifest of the platform (pipe it to `kubectl apply -f -`)",
        description="Print every manifest of the platform as one YAML stream: "
        "`workbench kubernetes render -f values.yaml | kubectl apply -f -` installs and "
        "upgrades it. The values are merged over deploy/values.yaml (every key documented "
        "there). Bad values: the reason on stderr, nothing on stdout, exit status 2.",
    )
    p.add_argument(
        "-f",
        "--values",
        action="append",
        default=[],
        metavar="FILE",
        help="a values file (repeatable: later files win)",
    )
    p.add_argument("--namespace", help="the platform's namespace (default: the values')")
    p.add_argument(
        "--secrets",
        metavar="FILE",
        help="the generated secrets, read back so nothing rotates, written when new ones are "
        "made (default: workbench-secrets.yaml beside the first values file); also takes "
        "`kubectl get secret hub -o yaml` output",
    )
    p.set_defaults(func=cmd_kubernetes_render)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="workbench", description="ai-workbench platform")
    parser.add_argument(
        "--config", help="settings file (default: $WORKBENCH_CONFIG or ./workbench.toml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("up", help="start the platform in the foreground").set_defaults(func=cmd_up)

    p = sub.add_parser("admin-password", help="set a local account's password")
    p.add_argument("user", nargs="?")
    p.add_argument("--password", help="the new password (prompted if omitted)")
    p.set_defaults(func=cmd_admin_password)

    images = sub.add_parser("images", help="build and list images").add_subparsers(
        dest="images_command", required=True
    )
    p = images.add_parser(
        "build",
        help="build catalog images (default: every instance image); name a platform image "
        "to build it, e.g. `workbench images build hub`",
    )
    p.add_argument("names", nargs="*")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument("--catalog", help="another catalog file, e.g. images/catalog-gpu.yaml")
    p.set_defaults(func=cmd_images_build)
    p = images.add_parser("list", help="list catalog images")
    p.add_argument("--catalog", help="another catalog file, e.g. images/catalog-gpu.yaml")
    p.set_defaults(func=cmd_images_list)
    p = images.add_parser("saved", help="images you may use, saved ones included (API)")
    p.add_argument("--url", help="platform URL (default: the one `workbench login` saved)")
    p.set_defaults(func=lambda args: _print_images(_client(args).images()))
    for action, what in (
        ("delete", "delete a saved image of yours"),
        ("push", "push a saved image to the configured registry"),
        ("share", "share a saved image with users or everyone"),
    ):
        p = images.add_parser(action, help=what)
        p.add_argument("image", help="NAME:TAG of the saved image")
        if action == "share":
            p.add_argument("--users", nargs="*", default=[], help="user names to share with")
            p.add_argument("--remove", nargs="*", default=[], help="user names to stop sharing")
            p.add_argument("--everyone", action="store_true", help="share with everyone")
            p.add_argument("--no-everyone", action="store_true", help="stop sharing with all")
        p.add_argument("--user", help="act on another user's images (admins)")
        p.add_argument("--url", help="platform URL (default: the one `workbench login` saved)")
        p.set_defaults(func=cmd_saved_images)
    p = images.add_parser("pull", help="pull a saved image from the registry and register it")
    p.add_argument("ref", help="registry reference, e.g. 127.0.0.1:5000/workbench-saved/a/b:v1")
    p.add_argument("--name", help="register it under this name (default: from the reference)")
    p.add_argument("--tag", help="register it under this tag (default: the reference's)")
    p.add_argument(
        "--base", help="the preset it was saved from, for your image pushed by another platform"
    )
    p.add_argument("--user", help="register it for another user (admins)")
    p.add_argument("--url", help="platform URL (default: the one `workbench login` saved)")
    p.set_defaults(func=cmd_saved_images)

    p = sub.add_parser("login", help="sign in and save a token")
    p.add_argument("--user", required=True)
    p.add_argument("--url")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("instances", help="list, create, start, stop, switch, delete instances")
    p.add_argument(
        "action",
        choices=[
            *("list", "show", "create", "start", "stop", "switch", "delete", "flavors", "save"),
            *("update", "extend", "ssh"),
        ],
    )
    p.add_argument("name", nargs="?")
    p.add_argument("--image", help="image to create or switch to; save: the new image's name")
    p.add_argument("--tag", help="save: the new image's tag (default latest)")
    p.add_argument("--flavor")
    p.add_argument(
        "--storage", type=int, help="storage size in GiB (create; update: grow a stopped one)"
    )
    p.add_argument("--idle", type=float, help="create, update: stop after MINUTES idle (0: never)")
    p.add_argument(
        "--max-hours",
        type=float,
        help="create, update: stop after HOURS whatever happens (0: no)",
    )
    p.add_argument("--minutes", type=float, help="extend: keep it running N minutes longer")
    p.add_argument(
        "--ssh", choices=["on", "off"], help="create, update: SSH access through the gateway"
    )
    p.add_argument(
        "--allowlist",
        help="create, update: addresses or CIDRs SSH is allowed from (comma-separated)",
    )
    p.add_argument("--description")
    p.add_argument("--user", help="act on another user's instances (admins)")
    p.add_argument("--url", help="platform URL (default: the one `workbench login` saved)")
    p.set_defaults(func=cmd_instances)

    keys = sub.add_parser("keys", help="SSH public keys for the SSH gateway").add_subparsers(
        dest="action", required=True
    )
    p = keys.add_parser("list", help="your SSH keys")
    p = keys.add_parser("add", help="register a public key (ed25519, ecdsa, rsa >= 2048)")
    p.add_argument("name", help="a name to recognise the key by, e.g. laptop")
    p.add_argument("pubkey_file", help="the public key file, e.g. ~/.ssh/id_ed25519.pub")
    p = keys.add_parser("generate", help="make an ed25519 key pair; the private key is shown once")
    p.add_argument("name")
    p.add_argument("--out", help="write the private key to this new file (and FILE.pub)")
    p = keys.add_parser("delete", help="delete a key by its id (or name)")
    p.add_argument("key", help="the key's id from `workbench keys list`, or its name")
    for p in keys.choices.values():
        p.add_argument("--user", help="another user's keys (admins)")
        p.add_argument("--url", help="platform URL (default: the one `workbench login` saved)")
        p.set_defaults(func=cmd_keys)

    p = sub.add_parser("audit", help="verify or export the audit log (administrators)")
    p.add_argument("action", choices=["verify", "export"])
    p.add_argument(
        "--local", action="store_true", help="verify: read the database directly, not the API"
    )
    p.add_argument("--since", help="export: ISO 8601 time or -24h, -7d")
    p.add_argument("--until")
    p.add_argument("--user", dest="filter_user", help="export: events of this user")
    p.add_argument("--resource", help="export: alice/my-notebook, or alice/ for all of alice")
    p.add_argument("--event", help="export: an event name, e.g. deleteNotebook")
    p.add_argument("--url", help="platform URL (default: the one `workbench login` saved)")
    p.set_defaults(func=cmd_audit)

    _job_parsers(sub)
    _inference_parsers(sub)
    _dataset_parsers(sub)
    _gallery_parsers(sub)
    _kubernetes_parsers(sub)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except WorkbenchError as e:
        _fail(e.message)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
