"""`igny8`: run the platform on one machine and operate its databases.

    igny8 up            PostgreSQL, NATS, migrations, demo data, every service, the gateway
    igny8 migrate       create databases and roles, run every service's migrations
    igny8 seed          (re)load the demo data through auth
    igny8 status        what `igny8 up` runs and whether it is healthy
    igny8 keys rotate   new token-signing key (the old one stays valid until its tokens expire)
    igny8 cluster F     cluster a keyword CSV into topics and pages, offline, without the platform
    igny8 new-service N a working empty service N: package, registry, gateway route, deploy
    igny8 automation run --site S   start a site's automation run and follow its stages

State lives in `.igny8/` (or `$IGNY8_HOME`); `DATABASE_URL` / `NATS_URL` name real servers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import psutil
import typer
from rich.table import Table

from igny8 import database
from igny8.console import Reporter, make_console
from igny8.home import AlreadyRunning, Home, Secrets, StateFile, exclusive, home_dir, lock_held
from igny8.infra import database_only
from igny8.platform import UpOptions, run_up
from igny8.services import SERVICES, ServiceSpec, present_services, service
from igny8.supervisor import http_ok

app = typer.Typer(
    help="Run the IGNY8 platform on one machine and operate its databases. State lives in "
         ".igny8/ (or $IGNY8_HOME); DATABASE_URL / NATS_URL name real servers.",
    no_args_is_help=True, add_completion=False,
)
keys_app = typer.Typer(help="Token-signing keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
automation_app = typer.Typer(help="Automation runs, from the terminal.", no_args_is_help=True)
app.add_typer(automation_app, name="automation")


def _home() -> Home:
    return Home(home_dir())


def _reporter() -> Reporter:
    return Reporter(make_console())


@app.command()
def up(
    timeout: Annotated[float, typer.Option(
        help="Seconds to wait for every process to be healthy.")] = 180.0,
    seed: Annotated[bool, typer.Option(help="Seed demo data the first time.")] = True,
) -> None:
    """Start the whole platform and supervise it until Ctrl-C (or SIGTERM)."""
    home = _home().ensure()
    reporter = _reporter()
    try:
        with exclusive(home):
            code = run_up(home, reporter, UpOptions(timeout=timeout, seed=seed))
    except AlreadyRunning as exc:
        reporter.fail(str(exc))
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def _selected(names: list[str] | None) -> list[ServiceSpec]:
    present = present_services()
    if not names:
        return present
    chosen = []
    for name in names:
        spec = service(name)
        if spec not in present:
            raise typer.BadParameter(f"services/{name}/main.py is not in this checkout")
        chosen.append(spec)
    return chosen


@app.command()
def migrate(
    services: Annotated[list[str] | None, typer.Option(
        "--service", "-s", help="Only this service (repeatable). Default: every service present.",
    )] = None,
) -> None:
    """Create each service's database and runtime role, and run its migrations."""
    home = _home()
    reporter = _reporter()
    specs = _selected(services)
    secrets = Secrets.load_or_create(home, [s.name for s in SERVICES]) \
        if _uses_local_secrets(specs) else None
    with database_only(home, os.environ, reporter.say) as infra:
        for spec in specs:
            with reporter.step(f"migrating {spec.name}", f"{spec.database} migrated"):
                database.migrate_all(infra.admin_url, [spec], secrets, lambda _: None)


def _uses_local_secrets(specs: list[ServiceSpec]) -> bool:
    """Deployments hand passwords in through the environment; locally they are generated."""
    return any(not os.environ.get(database.password_env_name(s.name)) for s in specs)


def _deployed_auth_url() -> str | None:
    """Inside a deployment (an auth pod, a Job) the runtime URL and secret come from the
    environment; locally they come from the state directory."""
    return os.environ.get("IGNY8_DATABASE_URL") if not _home().secrets_file.exists() else None


@app.command()
def seed(
    demo_email: Annotated[str, typer.Option(
        help="Login of the demo account.")] = database.DEMO_EMAIL,
    demo_password: Annotated[str | None, typer.Option(
        help="Password of the demo account (default: the generated one in secrets.json).",
    )] = None,
) -> None:
    """Load plans, industries, sectors, seed keywords and the demo account (idempotent)."""
    home = _home()
    reporter = _reporter()
    if (url := _deployed_auth_url()) is not None:
        if not demo_password:
            raise typer.BadParameter("--demo-password is required outside a local platform")
        with reporter.step("seeding through auth", "seeded"):
            counts = database.seed_demo(url, demo_password, demo_email)
    else:
        secrets = Secrets.load_or_create(home, [s.name for s in SERVICES])
        demo_password = demo_password or secrets.demo_password
        with database_only(home, os.environ, reporter.say) as infra:
            with reporter.step("migrating auth", "igny8_auth migrated"):
                auth = database.migrate_service(
                    infra.admin_url, service("auth"),
                    database.runtime_password(service("auth"), secrets))
            with reporter.step("seeding demo data through auth", "seeded demo data"):
                counts = database.seed_demo(auth.app_url, demo_password, demo_email,
                                            secret_key=secrets.secret_key)
            StateFile(home).update(seed={"marker": database.seed_marker(auth.owner_url),
                                         "counts": counts})
    reporter.say(", ".join(f"{key}: {value}" for key, value in counts.items()))
    reporter.done(f"demo login: {demo_email} / {demo_password}")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make a new signing key current; tokens signed with the old one stay valid until
    they expire (the JWKS keeps publishing it)."""
    home = _home()
    reporter = _reporter()
    if (url := _deployed_auth_url()) is not None:
        kid = database.rotate_signing_key(url)
    else:
        secrets = Secrets.load_or_create(home, [s.name for s in SERVICES])
        with database_only(home, os.environ, reporter.say) as infra:
            auth = database.migrate_service(
                infra.admin_url, service("auth"),
                database.runtime_password(service("auth"), secrets))
            kid = database.rotate_signing_key(auth.app_url, secret_key=secrets.secret_key)
    reporter.done("new signing key (the previous one stays valid until its tokens expire):")
    reporter.console.print(kid, markup=False)


@app.command()
def status() -> None:
    """What `igny8 up` runs here, and whether each part answers its health checks."""
    home = _home()
    reporter = _reporter()
    run = StateFile(home).read().get("run")
    if not run:
        reporter.say(f"nothing has run from {home.root} yet: `igny8 up` starts the platform")
        raise typer.Exit(1)
    running = lock_held(home)
    if not running:
        reporter.say(f"the platform is not running (last state: {run.get('status')}, "
                     f"{run.get('updated_at')})")
        raise typer.Exit(1)
    table = Table(title=f"IGNY8 platform ({home.root})")
    for column in ("process", "pid", "port", "alive", "health", "log"):
        table.add_column(column)
    healthy = True
    for name in ("postgres", "nats"):
        part = run.get(name, {})
        pid = part.get("pid")
        alive = bool(pid) and psutil.pid_exists(pid)
        if not part.get("embedded"):
            table.add_row(name, "-", "-", "external", "-", "-")
            continue
        healthy &= alive
        table.add_row(name, str(pid), str(part.get("port")), _yes(alive), "-",
                      str(home.log(name)))
    for proc in run.get("processes", []):
        pid = proc.get("pid")
        alive = bool(pid) and psutil.pid_exists(pid)
        checks = proc.get("health") or []
        ok = alive and all(http_ok(url) for url in checks)
        healthy &= ok
        table.add_row(proc["name"], str(pid), str(proc.get("port")), _yes(alive),
                      "[green]ok[/]" if ok else "[red]failing[/]", proc.get("log", ""))
    reporter.console.print(table)
    if run.get("api_url"):
        reporter.console.print(f"API   {run['api_url']}")
        reporter.console.print(f"Docs  {run['docs_url']}")
    raise typer.Exit(0 if healthy else 1)


@app.command()
def cluster(
    keywords_csv: Annotated[Path, typer.Argument(
        help="CSV with a keyword column (any case); volume is optional.",
        exists=True, dir_okay=False, readable=True)],
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Where to write (default: <input>.clustered.csv).")] = None,
    topics: Annotated[list[str] | None, typer.Option(
        "-t", "--topics",
        help='Topics you want, e.g. "massage chairs, standing desks"; with seed keywords: '
             '"massage chairs: shiatsu massage chair | zero gravity massage chair". '
             "Repeatable.")] = None,
) -> None:
    """Cluster a keyword list with the planner's offline engine, without the platform.
    Writes keyword, cluster name, cluster id, topic, intent (and volume) per row: a
    cluster is what one article targets, a topic groups clusters."""
    from rich.progress import Progress

    from services.planner.cluster_file import ClusterFileError, cluster_csv, parse_topics

    reporter = _reporter()
    with Progress(console=reporter.console, transient=True) as bar:
        task = bar.add_task(f"clustering {keywords_csv.name}", total=6)
        try:
            report = cluster_csv(
                keywords_csv, output, topics=parse_topics(topics or []),
                progress=lambda done, total: bar.update(task, completed=done, total=total))
        except ClusterFileError as exc:
            reporter.fail(str(exc))
            raise typer.Exit(2) from exc
    reporter.done(f"{report.keywords} keywords in {report.clusters} clusters, "
                  f"{report.topics} topics: {report.output_path}")
    if report.duplicates:
        reporter.say(f"{report.duplicates} duplicate keywords counted once")
    for row in report.skipped[:20]:
        reporter.warn(f"line {row.line} skipped: {row.reason}")
    if len(report.skipped) > 20:
        reporter.warn(f"... and {len(report.skipped) - 20} more skipped rows")


@app.command("new-service")
def new_service(
    name: Annotated[str, typer.Argument(help="Lowercase letters and digits, e.g. writer.")],
) -> None:
    """Generate a working empty service (docs/adding-a-service.md): the package with every
    module of the house shape and its tests, its ports in igny8/services.py, its prefix in
    gateway/routes.py, its compose and Kubernetes entries. Existing files are kept."""
    from igny8.scaffold import ScaffoldError, create, plan
    from igny8.services import REPO_ROOT

    reporter = _reporter()
    try:
        planned = plan(name)
    except ScaffoldError as exc:
        reporter.fail(str(exc))
        raise typer.Exit(2) from exc
    for line in create(REPO_ROOT, planned):
        reporter.say(line)
    reporter.done(f"{name}: API on port {planned.port}, worker health and metrics on "
                  f"{planned.metrics_port}; run its tests with "
                  f".venv/bin/pytest services/{name}")


def _yes(flag: bool) -> str:
    return "[green]yes[/]" if flag else "[red]no[/]"


@automation_app.command("run")
def automation_run(
    site: Annotated[int, typer.Option(help="The site whose pipeline runs.")],
    url: Annotated[str | None, typer.Option(
        help="The API (…/api/v1); default: the running platform's.")] = None,
    email: Annotated[str | None, typer.Option(help="Login; default: the demo account.")] = None,
    password: Annotated[str | None, typer.Option(help="Password for --email.")] = None,
    token: Annotated[str | None, typer.Option(
        help="An access token instead of a login (or IGNY8_TOKEN).",
        envvar="IGNY8_TOKEN")] = None,
    follow: Annotated[bool, typer.Option(help="Follow the run until it ends.")] = True,
    pause_on_exit: Annotated[bool, typer.Option(
        help="On Ctrl-C, pause the run too (it pauses after its current item).")] = False,
) -> None:
    """Start a run (`run_now`) and show each stage's progress until it ends. Ctrl-C stops
    following (the run goes on), or pauses it with --pause-on-exit."""
    import httpx

    from igny8 import automation
    from igny8.database import DEMO_EMAIL

    home = _home()
    reporter = _reporter()
    base = url or StateFile(home).read().get("run", {}).get("api_url")
    if not base:
        reporter.fail("no API: start the platform (`igny8 up`) or pass --url")
        raise typer.Exit(1)
    base = base.rstrip("/")
    if token is None and password is None and email is None:
        password = Secrets.load_or_create(home, []).demo_password
    try:
        api = (automation.Api(base, token, httpx.Client(timeout=30)) if token else
               automation.Api.login(base, email or DEMO_EMAIL, password or ""))
        run_id = automation.start(api, site)
        reporter.say(f"run {run_id} started for site {site}")
        if not follow:
            raise typer.Exit(0)
        try:
            run = automation.follow(api, site, run_id, reporter.console)
        except KeyboardInterrupt:
            if not pause_on_exit:
                reporter.warn(f"stopped following run {run_id}; it goes on "
                              "(--pause-on-exit pauses it)")
            else:
                automation.pause(api, site, run_id)
                reporter.warn(f"run {run_id}: pause asked; it pauses after its current item "
                              "(resume it from the app or the API)")
            raise typer.Exit(130) from None
    except automation.AutomationCliError as exc:
        reporter.fail(str(exc))
        raise typer.Exit(1) from None
    except httpx.HTTPError as exc:
        reporter.fail(f"the API at {base} did not answer: {exc}")
        raise typer.Exit(1) from None
    reporter.say(f"run {run_id}: {run['status']}, {run['total_credits']} credits"
                 + (f" ({run['error']})" if run.get("error") else ""))
    raise typer.Exit(0 if run["status"] == "completed" else 1)
