"""The ``careloop`` command: one front door to every piece of the loop."""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.text import Text
from typer.core import TyperCommand

from careloop.dates import parse_day
from careloop.groups import SummaryGroup
from careloop.insights_cli import insights_app
from core.output import console as output_console
from core.output import print_json
from core.tables import PlainTable


class _OneLineErrors(SummaryGroup):
    """Every command's errors end here: a user's mistake is told in one line (exit 2),
    anything else too (exit 1), with its traceback only under --debug."""

    def invoke(self, ctx: Any) -> Any:
        from typer._click.exceptions import ClickException  # typer's own copy of click

        from core.errors import UserError

        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, ClickException):
            raise  # help, a usage error: typer and click tell those themselves
        except BrokenPipeError:  # `careloop ... | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except (UserError, ValueError) as exc:
            _one_line(str(exc), exc)
            raise typer.Exit(2) from None
        except Exception as exc:
            _one_line(f"{type(exc).__name__}: {exc} (--debug shows the traceback)", exc)
            raise typer.Exit(1) from None


def _one_line(message: str, exc: BaseException) -> None:
    if _Options.debug:
        raise exc
    # The frames hold open warehouse connections that Prefect keeps referenced until exit,
    # where DuckDB's bindings would then report them as leaked.
    traceback.clear_frames(exc.__traceback__)
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


app = typer.Typer(
    cls=_OneLineErrors,
    help="careloop: closed-loop customer care.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
segment_app = typer.Typer(
    cls=SummaryGroup, help="Segment rules (segments/rules).", no_args_is_help=True
)
audience_app = typer.Typer(
    cls=SummaryGroup, help="Who a campaign would contact.", no_args_is_help=True
)
model_app = typer.Typer(
    cls=SummaryGroup, help="The at_risk model (scikit-learn).", no_args_is_help=True
)
replies_app = typer.Typer(cls=SummaryGroup, help="Customer replies.", no_args_is_help=True)
managers_app = typer.Typer(
    cls=SummaryGroup,
    help="Store managers: their personal sign-in links, and ending their sessions.",
    no_args_is_help=True,
)
load_app = typer.Typer(
    cls=SummaryGroup,
    help="Load stores, regions, subscribers or visits (CSV or Parquet), validated first.",
    no_args_is_help=True,
)
app.add_typer(segment_app, name="segment")
app.add_typer(audience_app, name="audience")
app.add_typer(model_app, name="model")
app.add_typer(replies_app, name="replies")
app.add_typer(load_app, name="load")
app.add_typer(managers_app, name="managers")
app.add_typer(insights_app, name="insights")
console = output_console()
err_console = output_console(stderr=True)
Params = Annotated[
    list[str] | None,
    typer.Option(
        "--param", metavar="NAME=VALUE", help="A segment parameter (the value read as YAML)."
    ),
]
OutputFormat = Annotated[str, typer.Option("--format", help="table, csv or json.")]
AsOf = Annotated[
    datetime | None,
    typer.Option(
        "--as-of",
        parser=parse_day,
        metavar="YYYY-MM-DD",
        help="The as-of date (default today).",
    ),
]


class _Options:
    debug = False


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and Prefect's own error logs.")
    ] = False,
) -> None:
    from core.files import close_home, owner_only_process
    from core.settings import load_settings, usable_home

    _Options.debug = debug
    # Flow logs would drown the progress bars; PREFECT_LOGGING_LEVEL=INFO brings them back.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # Whatever the umask, what this command (and every process it starts: a temporary Prefect
    # server, the service) creates is its owner's only; so is a home an older version left open.
    owner_only_process()
    close_home(usable_home(load_settings()))


@contextmanager
def _flow_session() -> Iterator[None]:
    """What a command that runs flows needs: the Prefect API it reports to (said in one line),
    flows without heartbeats, rich progress and step figures, Prefect's failure tracebacks
    left to --debug."""
    from careloop.display import quiet_prefect_failures
    from careloop.runtime import choose_api, in_process_flows, running_service, temporary_server
    from core.settings import load_settings

    settings = load_settings()
    api = choose_api(settings.home)
    err_console.print(f"[dim]{api.describe()}[/dim]", highlight=False)
    if url := running_service(settings):
        os.environ["CARELOOP_PUBLIC_URL"] = url  # the flows' links name the home's service
    if api.url is None:
        temporary_server()
    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging

    # Prefect read its settings and set up its logging when it was imported: by the command
    # before the API was exported, or by the stack's warm runner in another environment
    # (careloop.runner). Both again, from this command's environment.
    refresh_global_settings_context()
    setup_logging()
    if not _Options.debug:
        quiet_prefect_failures()
    with in_process_flows(), _progress():
        yield


@contextmanager
def _progress() -> Iterator[None]:
    """Long work shows rich progress bars, and each finished step its figures."""
    from careloop.display import RichReporter
    from core.progress import reporting

    reporter = RichReporter(console)
    with reporting(reporter), reporter.live():
        yield


def _day(value: datetime | None) -> date | None:
    return value.date() if value else None


def _today() -> date:
    """The business's date now (CARELOOP_TIMEZONE), never the server's."""
    from core.clock import business_date
    from core.settings import load_settings

    return business_date(load_settings().zone)


LONGEST_CELL = 40  # a longer text figure is a note under the table


def _show(title: str, figures: dict[str, Any]) -> None:
    from core.output import flatten  # not through flows: Prefect takes a second to import

    table = PlainTable(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    notes = []  # a sentence (the report's period) under the table: as a cell, off a terminal,
    # it made the value column as wide as itself, every number 150 columns to the right
    for row in flatten(figures):
        value = row["value"]
        if isinstance(value, str) and len(value) > LONGEST_CELL:
            notes.append(f"{row['figure']}: {value}")
        else:
            table.add_row(row["figure"], "-" if value is None else str(value))
    table.caption = Text("\n".join(notes)) if notes else None  # as written, never markup
    table.caption_justify = "left"
    console.print(table)


DEMO_DATA_UNTIL = datetime(2026, 3, 1)


@app.command("demo-data")
def demo_data(
    subscribers: Annotated[int, typer.Option(min=1, help="How many subscribers.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 7,
    until: Annotated[
        datetime,
        typer.Option(
            parser=parse_day,
            metavar="YYYY-MM-DD",
            # typer would show the datetime it holds, with a midnight
            help=f"The last day of the data. \\[default: {DEMO_DATA_UNTIL:%Y-%m-%d}]",
            show_default=False,
        ),
    ] = DEMO_DATA_UNTIL,
    replace_loaded: Annotated[
        bool, typer.Option(help="Replace them even when files were loaded into them.")
    ] = False,
) -> None:
    """Replace the warehouse's stores, subscribers and visits with a synthetic population."""
    from core.progress import tracked
    from core.settings import load_settings
    from demo.data import build_demo_data
    from warehouse.db import warehouse

    settings = load_settings()
    with (
        _progress(),
        warehouse(settings.warehouse_path) as con,
        tracked("subscribers", subscribers) as advance,
    ):
        if not replace_loaded:
            _nothing_loaded(con, settings.warehouse_path)
        summary = build_demo_data(
            con, subscribers=subscribers, seed=seed, until=until.date(), on_progress=advance
        )
        # what those loads put there is replaced now (a build cut short replaced nothing
        # for certain, and asks again): later runs need not ask
        con.execute("UPDATE load_reports SET replaced_at = now() WHERE replaced_at IS NULL")
    console.print(
        f"{summary.stores} stores, {summary.subscribers} subscribers, "
        f"{summary.visits} visits in {settings.warehouse_path}"
    )


def _nothing_loaded(con: Any, path: Path) -> None:
    """The data team's loaded stores, subscribers and visits are not replaced unasked."""
    from core.errors import UserError

    row = con.execute(
        "SELECT count(*), max(loaded_at)::DATE FROM load_reports "
        "WHERE rows_loaded > 0 AND replaced_at IS NULL"
    ).fetchone()
    if row and row[0]:
        raise UserError(
            f"{path} holds what {row[0]:,} loaded file(s) put there (the last on {row[1]}), "
            "which demo-data replaces: point CARELOOP_HOME at another folder for the synthetic "
            "population, or add --replace-loaded to replace them"
        )


@app.command()
def run(
    campaign: Annotated[str, typer.Argument(help="A campaign in campaigns/definitions.")],
    as_of: AsOf = None,
    param: Params = None,
    send: Annotated[bool, typer.Option(help="Send what is due after planning.")] = True,
) -> None:
    """Run one campaign's care loop for an as-of date."""
    from campaigns.catalog import checked_campaign
    from core.settings import load_settings
    from flows.care_loop import care_loop

    params = _params(param)
    checked_campaign(load_settings(), campaign, params)  # a user error stops here, at once
    with _flow_session():
        figures = care_loop(campaign, as_of=_day(as_of), params=params, send=send)
    if "notice" in figures:
        console.print(f"[yellow]notice:[/yellow] {escape(figures['notice'])}", highlight=False)


def _params(pairs: list[str] | None) -> dict[str, Any]:
    import yaml

    from core.errors import UserError

    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--param {pair!r}: expected NAME=VALUE")
        try:
            params[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "not a YAML value"
            raise UserError(f"--param {key.strip()}={value!r}: {problem}") from None
    return params


@app.command()
def deploy() -> None:
    """Deploy prefect.yaml's flows to the Prefect server (PREFECT_API_URL, or the stack `make
    up` started), daily schedules in the business timezone, and check them on the server."""
    import os

    from careloop.deploy import deploy_all
    from careloop.runtime import choose_api
    from core.settings import load_settings

    settings = load_settings()
    api = choose_api(settings.home)
    if api.url is None:
        _fail("careloop deploy needs a Prefect server: set PREFECT_API_URL, or run `make up`")
    count = deploy_all(dict(os.environ), api.url, settings.timezone)
    console.print(
        f"{count} deployments on {api.url}; daily schedules in {settings.timezone}", highlight=False
    )


@app.command()
def dispatch() -> None:
    """Send everything in the outbox that is due now."""
    from flows.dispatch_outbox import dispatch_outbox

    with _flow_session():
        dispatch_outbox()


@app.command()
def collect() -> None:
    """Ingest the reply inbox into the warehouse."""
    from flows.collect_feedback import collect_feedback

    with _flow_session():
        collect_feedback()


@app.command("second-round")
def second_round_command(as_of: AsOf = None) -> None:
    """Give every dissatisfied customer a second round of care and open store cases."""
    from flows.second_round import second_round

    with _flow_session():
        second_round(as_of=_day(as_of))


Month = Annotated[
    str | None,
    typer.Option("--month", help="YYYY-MM (default: last month in the business timezone)."),
]


@app.command()
def report(
    month: Month = None,
    fmt: Annotated[
        str, typer.Option("--format", help="html: write the report's files; json: print figures.")
    ] = "html",
) -> None:
    """The month's KPI report (HTML with charts, and its figures as JSON), the loop's figures
    for care planned in that month, and the store managers' dissatisfied lists."""
    from core.clock import last_month, utc_now
    from core.settings import load_settings
    from insights.kpis import report_month
    from insights.monthly import configured_monthly_report, month_reports
    from insights.report import summary_rows
    from insights.report_html import write_month
    from warehouse.db import warehouse

    if fmt not in ("html", "json"):
        raise typer.BadParameter(f"{fmt!r}: use html or json", param_hint="--format")
    settings = load_settings()
    chosen = month or last_month(settings.zone)
    report_month(chosen)  # a clear error for a month it cannot cover, before any work
    with warehouse(settings.warehouse_path) as con:
        now = utc_now()  # one instant for both reports: the tests they share are as of it
        if fmt == "json":
            print_json(configured_monthly_report(con, settings, chosen, now).as_json())
            return
        reports = month_reports(con, settings, chosen, now)
    monthly, written = reports.monthly, reports.loop
    html, data = write_month(monthly, settings.reports_dir)  # the warehouse let go first
    # two cohorts, each named: the loop follows the month's care to its replies, whenever they
    # came (its cases and opt-outs dated in the month); each KPI counts its units dated in
    # the month (a rating by when it came, a survey by when it was sent)
    title = (
        f"the loop: care planned in {chosen} (its replies whenever they came), "
        "cases and opt-outs dated in it"
    )
    _show(title, dict(summary_rows(written.report)))
    console.print(f"KPI report for {chosen} (each KPI's units dated in the month): {html}")
    console.print(f"its figures (JSON): {data}")
    console.print(f"loop report: {written.path}")
    _show_store_lists(written.store_rows, settings.reports_dir / "store_lists")


@app.command()
def demo(
    subscribers: Annotated[int, typer.Option(min=100, help="How many subscribers.")] = 50_000,
    days: Annotated[int, typer.Option(min=1, help="Days of campaigns.")] = 14,
    settle_days: Annotated[int, typer.Option(min=0, help="Days after, for replies.")] = 4,
    seed: Annotated[
        int,
        typer.Option(
            help="Same seed and campaign files, same demo (it runs every campaign in "
            "campaigns/definitions)."
        ),
    ] = 7,
) -> None:
    """Build a demo warehouse and run the whole loop on the sandbox, in simulated time.

    It runs in $CARELOOP_HOME/demo, deleted first and rebuilt. With CARELOOP_HOME pointing at a
    demo's home (to work on the demo's data) it refuses to run, rather than nest a demo in it."""
    from core.settings import load_settings
    from flows.demo import demo_home_in, run_demo
    from insights.report import summary_rows

    # a demo's own home is refused before any server starts, as is one a stack runs on
    _no_stack_on(demo_home_in(load_settings().home))
    with _flow_session():
        result = run_demo(subscribers=subscribers, days=days, settle_days=settle_days, seed=seed)
    console.print(
        f"{result.data.subscribers} subscribers, {result.data.stores} stores, "
        f"{result.data.visits} visits in {result.home}"
    )
    _show("careloop demo: the loop, step by step", dict(summary_rows(result.report)))
    console.print(f"monthly KPI report: {result.monthly_path}")
    console.print(f"loop report: {result.report_path}")
    _show_store_lists(result.store_rows, result.report_path.parent / "store_lists")


def _no_stack_on(demo_home: Path) -> None:
    """The demo deletes its home first: a stack `make up` started there (to work on the
    demo's data) would lose its pid files and database, and `make down` could stop nothing."""
    from careloop.stack import running_in
    from core.errors import UserError

    running = running_in(demo_home.resolve())
    if running:
        raise UserError(
            f"a stack runs on the demo's home ({', '.join(running)}), which the demo deletes: "
            f"`make down` with CARELOOP_HOME={demo_home} first"
        )


def _show_store_lists(rows: dict[str, int], folder: Path) -> None:
    from insights.report import stores_listing

    listing = stores_listing(rows)
    console.print(
        f"store managers' lists: {len(rows)} CSV files, {listing} with cases listed, in {folder}"
    )


def _load(kind: str, path: Path, quarantine: bool) -> None:
    from core.settings import load_settings
    from warehouse.db import warehouse
    from warehouse.loading import (
        LoadError,
        LoadRefusedError,
        bad_row_lines,
        header_hint,
        load_file,
        report_path,
    )
    from warehouse.stores import new_managers, store_managers

    settings = load_settings()
    replaced: list[str] = []  # stores whose manager this load changes
    try:
        with _progress(), warehouse(settings.warehouse_path) as con:
            managers = store_managers(con) if kind == "stores" else {}
            result = load_file(con, settings, kind, path, quarantine=quarantine)
            if kind == "stores":
                replaced = new_managers(managers, store_managers(con))
    except LoadRefusedError as refused:
        err_console.print(f"[red]refused[/red] {escape(f'{path}: {refused}')}", highlight=False)
        _ignored(refused.result.ignored_columns)
        err_console.print(f"report: {report_path(settings, refused.result.load_id)}")
        raise typer.Exit(1) from None
    except LoadError as refused:
        err_console.print(f"[red]refused[/red] {escape(str(refused))}", highlight=False)
        err_console.print(f"report: {report_path(settings, _newest_load(settings))}")
        raise typer.Exit(1) from None
    _ignored(result.ignored_columns)
    if result.absent_columns:
        hint = header_hint(result.absent_columns, result.ignored_columns)  # 'Phone' for phone
        console.print(
            f"[yellow]not in the file[/yellow]: {escape(', '.join(result.absent_columns))}: "
            f"rows already loaded keep theirs, new rows have none{escape(hint)}"
        )
    console.print(
        f"{kind}: {result.rows_loaded:,} of {result.rows_read:,} rows loaded; load {result.load_id}"
    )
    report = report_path(settings, result.load_id)
    for line in bad_row_lines(result.bad_rows, result.quarantine_file or report):
        console.print(f"  {escape(line)}", highlight=False)
    if result.quarantine_file:
        console.print(
            f"{len(result.bad_rows):,} bad row(s) kept in the warehouse table quarantine "
            f"(load_id {result.load_id!r}) and in {result.quarantine_file}"
        )
    console.print(f"report: {report}")
    if replaced:
        _sign_out(settings, replaced)


def _sign_out(settings: Any, stores: list[str]) -> None:
    """A store with a new manager: the old manager's sessions and links end."""
    from core.clock import utc_now
    from inbox.inbox import Inbox
    from inbox.sessions import ManagerSessions

    sessions = ManagerSessions(Inbox.of(settings).db)
    ended = sum(sessions.revoke(store_id, utc_now()) for store_id in stores)
    console.print(
        f"new manager at {', '.join(stores)}: {ended} session(s) signed out, earlier sign-in"
        " links refused (`careloop managers link` gives the new one)",
        highlight=False,
    )


def _ignored(columns: list[str]) -> None:
    if columns:
        named = escape(", ".join(columns))  # the file's own header: text, never markup
        console.print(f"[yellow]ignored[/yellow] column(s) not loaded: {named}", highlight=False)


def _newest_load(settings: Any) -> str:
    from warehouse.db import warehouse

    with warehouse(settings.warehouse_path) as con:
        row = con.execute(
            "SELECT load_id FROM load_reports ORDER BY loaded_at DESC LIMIT 1"
        ).fetchone()
    return str(row[0]) if row else "?"


def _add_load_command(kind: str) -> None:
    """``careloop load KIND PATH``, its help listing the columns the file must have."""
    from warehouse.entities import ENTITIES

    def command(
        path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or Parquet.")],
        quarantine: Annotated[
            bool, typer.Option(help="Load the good rows; keep the bad ones in quarantine.")
        ] = False,
    ) -> None:
        _load(kind, path, quarantine)

    columns = ENTITIES[kind].help()
    command.__doc__ = (
        f"Load a {kind} file (CSV or Parquet), validated first, upserted by id.\n\n"
        "A file with a bad row is refused whole unless --quarantine; columns not listed "
        "here are ignored and reported, and those not required may be left out."
        f"\n\n\bColumns:\n{columns}"
    )
    load_app.command(kind)(command)


for _kind in ("regions", "stores", "subscribers", "visits"):
    _add_load_command(_kind)


def own_address(host: str, port: int) -> str:
    """The service's address as its links name it: this machine for every interface, an IPv6
    address in brackets ("http://::1:8000" is no address)."""
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{local}]:{port}" if ":" in local else f"http://{local}:{port}"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run the feedback service: provider webhooks, rating links and unsubscribes."""
    import uvicorn

    from careloop.runtime import naming_the_service
    from core.masking import install_masking
    from core.settings import load_settings
    from service.access_log import access_logging
    from service.app import FeedbackService, check_exposure, settle_garbage_collector
    from service.guard import guarded_http

    settings = load_settings()
    named = "public_url" in settings.model_fields_set
    if not named:
        # links, and the sign-in form's origin, name this service: with the default's port
        # 8000 behind another --port, a manager's sign-in went to a port where nothing ran
        settings = settings.model_copy(update={"public_url": own_address(host, port)})
    check_exposure(settings, host)
    service = FeedbackService(settings)
    application = service.app()
    console.print(
        f"careloop serve on http://{host}:{port} (inbox {service.inbox.db.describe}):"
        f" {service.enabled()}; links and the managers' page at {settings.public_url}"
        " (CARELOOP_PUBLIC_URL)",
        soft_wrap=True,
        highlight=False,
    )
    settle_garbage_collector()  # this process serves requests only: tune its collector
    install_masking("uvicorn", "uvicorn.access", "uvicorn.error")
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=guarded_http(settings.head_timeout_seconds, settings.connections_per_client),
    )
    # the home's other commands (dispatch's rating links, `managers link`) name it too
    own = None if named else settings.public_url
    with access_logging(), naming_the_service(settings.home, own) as listening:
        _server(config, listening).run()


def _server(config: Any, listening: Callable[[], None]) -> Any:
    """uvicorn's server, telling ``listening`` once it listens: a serve that could not bind
    (its port taken) names nothing."""
    import uvicorn

    class Serving(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                listening()

    return Serving(config)


@app.command()
def migrate() -> None:
    """Create or upgrade the warehouse schema, and say which migrations this applied."""
    from core.settings import load_settings
    from warehouse.db import applied_versions, warehouse

    settings = load_settings()
    began = datetime.now(UTC)  # the database's own clock stamps each migration it applies
    with warehouse(settings.warehouse_path) as con:
        latest = max(applied_versions(con))
        applied = con.execute(
            "SELECT version, name FROM schema_migrations WHERE applied_at >= ? ORDER BY version",
            [began],
        ).fetchall()
    done = ", ".join(f"{version:04d}_{name}" for version, name in applied)
    console.print(
        f"{settings.warehouse_path}: schema version {latest}; "
        + (f"applied now: {done}" if done else "nothing to apply")
    )


@app.command()
def campaigns() -> None:
    """List the campaign definitions (each is checked as it loads); those that cannot load,
    with why, and then the command fails."""
    from campaigns.catalog import Broken, load_campaigns
    from core.settings import load_settings

    broken = Broken()
    table = PlainTable("campaign", "segment", "channels", "holdout %", "description")
    for name, loaded in load_campaigns(load_settings(), broken=broken).items():
        c = loaded.campaign
        table.add_row(
            name, c.segment, ", ".join(c.care.channels), str(c.holdout_percent), c.description
        )
    console.print(table)
    _show_broken(broken.errors())


def _show_broken(errors: list[str]) -> None:
    """Definitions that cannot load, each with its error; the command then fails (exit 1)."""
    for error in errors:
        err_console.print(f"[red]cannot load[/red] {escape(error)}", highlight=False)
    if errors:
        raise typer.Exit(1)


@segment_app.command("list")
def segment_list() -> None:
    """List the segment rules."""
    rules, broken = _rules()
    table = PlainTable("segment", "owner", "parameters", "description")
    for name, rule in rules.items():
        table.add_row(
            name,
            rule.owner,
            ", ".join(f"{k}={v}" for k, v in rule.params.items()),
            rule.description,
        )
    console.print(table)
    _show_broken(list(broken.values()))


@segment_app.command("show")
def segment_show(name: str) -> None:
    """Show a segment rule: description, owner, parameters, columns and its SQL."""
    from rich.syntax import Syntax

    rule = _rule(name)
    # the data team's words, shown as written: brackets ("list[integer]") are no markup
    console.print(
        f"[bold]{rule.name}[/bold] "
        + escape(f"({rule.path})\n{rule.description}\nowner: {rule.owner}"),
        highlight=False,
    )
    for param, spec in rule.param_specs.items():
        said = f"  param {param} = {spec.default!r} ({spec.bounds()}) {spec.description}"
        console.print(escape(said), highlight=False)
    for column, meaning in rule.columns.items():
        console.print(escape(f"  column {column}: {meaning}"), highlight=False)
    if console.is_terminal:
        console.print(Syntax(rule.sql, "sql"))
    else:  # no colours to show, and Syntax pads every line to the console's width
        console.out(rule.sql.rstrip("\n"), highlight=False)


@segment_app.command("preview")
def segment_preview(
    name: str, as_of: AsOf = None, param: Params = None, fmt: OutputFormat = "table"
) -> None:
    """Print the rule's members for a date (the rule itself: no consent, caps or holdout)."""
    from core.output import print_frame
    from segments.registry import materialize
    from warehouse.db import query_typed_frame

    rule = _rule(name)
    with _reader() as con:
        materialize(con, rule, _day(as_of) or _today(), "preview", _params(param))
        # through Arrow: a DATE stays a date (pandas made it a midnight with no zone)
        frame = query_typed_frame(
            con,
            "SELECT subscriber_id, * EXCLUDE (subscriber_id) FROM preview ORDER BY subscriber_id",
        )
    print_frame(frame, _format(fmt), console, f"segment {name}")


@segment_app.command("test")
def segment_test(name: Annotated[str | None, typer.Argument()] = None) -> None:
    """Run the tests in the rules' YAML files (all rules, or one)."""
    from segments.testing import TestResult, run_rule_tests

    rules, broken = _rules()
    # a rule that cannot load fails its tests (exit 1, named or not), and the others still run
    failing = {n: e for n, e in broken.items() if name in (None, n)}
    if name is None:
        chosen = list(rules.values())
    else:
        chosen = [] if name in broken else [_rule(name, (rules, broken))]
    results = [result for rule in chosen for result in run_rule_tests(rule)]
    results += [TestResult(rule, "loads", False, error) for rule, error in failing.items()]
    for r in results:
        mark = "[green]PASS[/green]" if r.passed else "[red]FAIL[/red]"
        said = f"{r.rule}: {r.test}" + (f" - {r.detail}" if r.detail else "")
        console.print(f"{mark} {escape(said)}", highlight=False)
    failed = sum(not r.passed for r in results)
    console.print(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


@audience_app.command("preview")
def audience_preview(
    campaign: str, as_of: AsOf = None, param: Params = None, fmt: OutputFormat = "table"
) -> None:
    """Who the campaign would contact, and for every other member why not."""
    from campaigns.audience import preview_audience
    from campaigns.catalog import checked_campaign
    from core.output import print_frame
    from core.settings import load_settings

    settings = load_settings()
    loaded = checked_campaign(settings, campaign)  # another campaign's bad file stops nothing
    with _reader() as con:
        frame = preview_audience(con, settings, loaded, _day(as_of) or _today(), _params(param))
    print_frame(frame, _format(fmt), console, f"audience {campaign}")


def _rules() -> tuple[dict[str, Any], dict[str, str]]:
    """The segment rules that load, and those that cannot, each with its error."""
    from segments.registry import load_rules

    broken: dict[str, str] = {}
    return load_rules(broken=broken), broken


def _rule(name: str, loaded: tuple[dict[str, Any], dict[str, str]] | None = None) -> Any:
    """The named rule (of ``loaded``, the rules read already), or a one-line error."""
    rules, broken = loaded or _rules()
    if name in broken:
        _fail(broken[name])
    if name not in rules:
        _fail(f"unknown segment {name!r}; known: {', '.join(sorted(rules))}")
    return rules[name]


def _format(fmt: str) -> Any:
    if fmt not in ("table", "csv", "json"):
        raise typer.BadParameter(f"{fmt!r}: use table, csv or json", param_hint="--format")
    return fmt


@contextmanager
def _reader() -> Iterator[Any]:
    """The warehouse opened read-only (previews never write), created first if missing."""
    from core.settings import load_settings
    from warehouse.db import warehouse

    with warehouse(load_settings().warehouse_path, read_only=True) as con:
        yield con


@model_app.command("train")
def model_train() -> None:
    """Train a new version on all rated care; report AUC and calibration on held-out ratings."""
    from core.settings import load_settings
    from segments.models import train
    from warehouse.db import warehouse

    settings = load_settings()
    with _progress(), warehouse(settings.warehouse_path) as con:
        trained = train(con, settings.home / "models")
    m = trained.metrics
    console.print(
        f"at_risk v{trained.version} ({trained.path}): trained on {m['training_rows']:,} "
        f"ratings, judged on the {m['held_out_rows']:,} latest (held out)\n"
        f"  AUC {m['auc']:.3f} (a constant predictor: 0.5); Brier score {m['brier']:.4f} "
        f"(the constant: {m['brier_constant']:.4f}); dissatisfied on held-out "
        f"{m['held_out_dissatisfied_rate']:.1%}",
        highlight=False,
    )
    table = PlainTable(
        "predicted (bin mean)", "observed", title="calibration on held-out ratings (quintiles)"
    )
    for point in m["calibration"]:
        table.add_row(f"{point['predicted']:.1%}", f"{point['observed']:.1%}")
    console.print(table)


@model_app.command("score")
def model_score(as_of: AsOf = None) -> None:
    """Score every subscriber with the latest model for a date (the at_risk rule reads it)."""
    from core.settings import load_settings
    from segments.models import score
    from warehouse.db import warehouse

    day = _day(as_of) or _today()
    with _progress(), warehouse(load_settings().warehouse_path) as con:
        scored = score(con, day)
    console.print(f"scored {scored} subscribers as of {day}")


@managers_app.command("link")
def managers_link(
    store_id: Annotated[str, typer.Argument(help="The store whose manager signs in.")],
    days: Annotated[
        int | None,
        typer.Option(min=1, max=90, help="Valid for (default CARELOOP_MANAGER_LINK_DAYS)."),
    ] = None,
) -> None:
    """Print a store manager's personal sign-in link for the managers' page."""
    from careloop.runtime import running_service
    from core.clock import utc_now
    from core.settings import load_settings
    from core.tokens import manager_link

    settings = load_settings()
    with _reader() as con:
        known = con.execute("SELECT 1 FROM stores WHERE store_id = ?", [store_id]).fetchone()
    if not known:
        _fail(f"unknown store {store_id!r}")
    valid = timedelta(days=days or settings.manager_link_days)
    secret = settings.link_secret.get_secret_value()
    url = running_service(settings)
    if url is None and "public_url" not in settings.model_fields_set:
        # the default names a port: another home's service may answer there, with its own
        # stores, and nothing of this one's (a newcomer's link opened the demo's page)
        err_console.print(
            f"[yellow]notice:[/yellow] no careloop service runs for this home (`make up`, or "
            f"`careloop serve`): the link names {escape(settings.public_url)}, which must "
            "serve this home for it to open",
            highlight=False,
        )
    typer.echo(manager_link(store_id, url or settings.public_url, secret, utc_now(), valid))


@managers_app.command("revoke")
def managers_revoke(
    store_id: Annotated[str, typer.Argument(help="The store whose sessions end.")],
) -> None:
    """End every session of a store's manager and refuse the links issued until now (a lost
    phone, a leaked link); `careloop managers link` gives the manager a new one."""
    from core.clock import utc_now
    from core.settings import load_settings
    from inbox.inbox import Inbox
    from inbox.sessions import ManagerSessions

    settings = load_settings()
    with _reader() as con:
        known = con.execute("SELECT 1 FROM stores WHERE store_id = ?", [store_id]).fetchone()
    if not known:
        _fail(f"unknown store {store_id!r}")
    ended = ManagerSessions(Inbox.of(settings).db).revoke(store_id, utc_now())
    console.print(f"{store_id}: {ended} session(s) ended; links issued until now refused")


LONG_OPTION = re.compile(r"--[A-Za-z][A-Za-z0-9-]*(=.*)?")


class _ReplyCommand(TyperCommand):
    """`replies parse`, which notes whether its text came after ``--``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["after_dashes"] = args[:1] == ["--"]
        return super().parse_args(ctx, args)


# A reply is what a customer wrote: "-1", "--- 2" or "--score 3" is its text. A text that is
# an option's whole shape (--debug, --format=json) is more likely a misplaced one: refused,
# unless given after --.
@replies_app.command("parse", cls=_ReplyCommand, context_settings={"ignore_unknown_options": True})
def replies_parse(ctx: typer.Context, text: str) -> None:
    """Print how a reply is understood, as one JSON object."""
    from feedback.parsing import parse_reply

    if LONG_OPTION.fullmatch(text.strip()) and not ctx.meta.get("after_dashes"):
        raise typer.BadParameter(
            f"{text!r} looks like an option, and this command has none but --help: to parse "
            "it as a reply, put -- before it",
            param_hint="TEXT",
        )
    print_json(parse_reply(text).as_dict())


def _fail(message: str) -> NoReturn:
    from core.errors import UserError

    raise UserError(message)


def run_cli() -> None:  # pragma: no cover - the console entry point
    """Run a command; a mistake in how it was called is told in one line too (exit 2)."""
    from typer._click.exceptions import ClickException  # typer's own copy of click

    try:
        code = app(standalone_mode=False)
    except ClickException as exc:
        said = escape(exc.format_message())
        err_console.print(f"[red]error:[/red] {said} (see --help)", highlight=False)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run_cli()
