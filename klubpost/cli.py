"""The `klubpost` command: Flask's commands (run, db upgrade...) plus our own."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from klubpost import create_app
from klubpost.db import db


@click.group(cls=FlaskGroup, create_app=create_app)
def main() -> None:
    """Klubpost: newsletters for library clubs."""


def init_app(app) -> None:
    """Add our commands to the app's `flask`/`klubpost` command group."""
    for command in (
        demo,
        scheduler_command,
        dev,
        imports,
        send_command,
        tracking,
        bounces_command,
    ):
        app.cli.add_command(command)


def _require_schema() -> None:
    from klubpost.schema import PendingMigrations, check_schema

    try:
        check_schema()
    except PendingMigrations as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.option("--reset", is_flag=True, help="Delete everything first.")
@with_appcontext
def demo(reset: bool) -> None:
    """Load demo libraries, clubs, users and subscribers (prints the log-ins)."""
    from klubpost.demo import load_demo

    _require_schema()
    logins = load_demo(db.session, reset=reset)
    if logins is None:
        click.echo("Demo data is already loaded (use --reset to start over).")
        return
    _print_logins(logins)


def _print_logins(logins: list[tuple[str, str, str, str]]) -> None:
    click.echo(f"\nDemo log-ins (password for all: {logins[0][3]})")
    for library, role, email, _password in logins:
        click.echo(f"  {library:<28} {role:<17} {email}")
    click.echo("")


@click.command("scheduler")
@with_appcontext
def scheduler_command() -> None:
    """Run the scheduler process (one per installation)."""
    import scheduler

    _require_schema()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Not a line for every tick: our own log says what the scheduler did.
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
    scheduler.run(current_app._get_current_object())


@click.group()
def imports() -> None:
    """CSV imports (normally run by the scheduler)."""


@imports.command("run")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=None)
@with_appcontext
def run_imports(batch_size: int | None) -> None:
    """Process queued imports now, and take over those of a stopped runner."""
    from subscribers.imports import run_pending_imports

    _require_schema()
    worked = run_pending_imports(db.session, batch_rows=batch_size)
    click.echo(f"{worked} import(s) processed.")


@click.group()
def tracking() -> None:
    """Opens and clicks (normally rolled up and cleaned by the scheduler)."""


@tracking.command("rollup")
@with_appcontext
def tracking_rollup() -> None:
    """Turn the settled raw hits into the figures staff read, now."""
    from tracking.rollup import roll_up

    _require_schema()
    click.echo(f"{roll_up(db.session)} hit(s) rolled up.")


@tracking.command("purge")
@with_appcontext
def tracking_purge() -> None:
    """Delete raw hits older than TRACKING_RETENTION_DAYS (the figures stay)."""
    from tracking.rollup import purge_events

    _require_schema()
    total = 0
    while deleted := purge_events(db.session):
        total += deleted
    click.echo(f"{total} raw hit(s) deleted.")


@click.command()
@click.option("--host", default="127.0.0.1", envvar="HOST", show_default=True)
@click.option("--port", default=5000, type=int, envvar="PORT", show_default=True)
@with_appcontext
def dev(host: str, port: int) -> None:
    """Run the web app and the scheduler together, for development."""
    from werkzeug.serving import run_simple

    from klubpost.demo import demo_logins

    _require_schema()
    app = current_app._get_current_object()
    env = dict(os.environ)
    if not os.environ.get("BASE_URL"):
        # Links in mails must lead to this server, on whatever port it listens.
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        app.config["BASE_URL"] = env["BASE_URL"] = f"http://{shown}:{port}"
    logins = demo_logins(db.session)
    if logins:
        _print_logins(logins)
    worker = subprocess.Popen(
        [sys.executable, "-m", "klubpost.cli", "scheduler"], env=env
    )
    click.echo(f"Klubpost is at {app.config['BASE_URL']} (Ctrl+C stops it)")
    try:
        # Not app.run(): Flask ignores that inside a `flask`/`klubpost` command.
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        worker.terminate()
        worker.wait(timeout=10)


@click.command("send")
@click.argument("campaign_id", type=int, required=False)
@click.option(
    "--processes", type=int, help="Sender processes, one per core (SEND_PROCESSES)."
)
@click.option(
    "--connections", type=int, help="SMTP connections each (SEND_CONNECTIONS)."
)
@click.option(
    "--forever", is_flag=True, help="Keep waiting for work: an extra sender process."
)
@with_appcontext
def send_command(
    campaign_id: int | None, processes: int | None, connections: int | None, forever
):
    """Send what is due now; with CAMPAIGN_ID, start that draft now and watch it.

    Any number of `klubpost send --forever` processes (on PostgreSQL also on
    other machines) share the work: each batch goes to exactly one of them.
    """
    import threading

    from campaigns import sending
    from campaigns.models import Campaign, CampaignStatus, ScheduleMode

    _require_schema()
    app = current_app._get_current_object()
    campaign = None
    if campaign_id is not None:
        campaign = db.session.get(Campaign, campaign_id)
        if campaign is None:
            raise click.ClickException(f"There is no campaign {campaign_id}.")
        if campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            try:
                sending.schedule(campaign, ScheduleMode.NOW)
            except sending.SendingError as exc:
                raise click.ClickException(exc.message) from exc
            db.session.commit()
    sending.start_due(db.session)
    db.session.commit()

    watched = campaign.id if campaign is not None else None

    def finished() -> bool:
        # Runs in the senders' threads, each with its own session: only ids
        # cross over, never objects of this thread's session.
        if forever:
            return False
        if watched is None:
            return True
        db.session.expire_all()
        return db.session.get(Campaign, watched).status != CampaignStatus.SENDING

    processes = max(1, processes or app.config["SEND_PROCESSES"])
    # Watching one campaign, a sender thread that has run out of batches
    # looks often whether the others have finished it, so that the command
    # ends soon after the last mail.
    idle_wait = 0.1 if watched is not None else 0.5
    db.session.close()  # nothing of this session may be shared with the forks
    children = sending.run_processes(
        app, processes, connections=connections, wait_for=finished, idle_wait=idle_wait
    )
    # This process sends too (in a thread: the main one shows the progress).
    sender = sending.Sender(
        app, connections=connections, rate_share=processes, idle_wait=idle_wait
    )
    worker = threading.Thread(target=sender.run, kwargs={"wait_for": finished})
    worker.start()

    def alive() -> bool:
        return worker.is_alive() or any(child.is_alive() for child in children)

    if campaign is None:
        worker.join()
        for child in children:
            child.join()
    else:
        _show_progress(db.session.get(Campaign, watched), alive)
    failed = [child.exitcode for child in children if child.exitcode]
    if sender.errors or failed:
        raise click.ClickException(
            f"{len(failed) + bool(sender.errors)} sender process(es) failed."
        )
    if campaign is None:
        click.echo("Nothing more is due.")


def _show_progress(campaign, alive) -> None:
    """A progress bar for one campaign until its sender stops."""
    import time

    from campaigns import sending

    total = sending.progress(db.session, campaign).total
    done = 0
    with click.progressbar(length=total, label=f"Campaign {campaign.id}") as bar:
        while True:
            running = alive()
            db.session.expire_all()
            now = sending.progress(db.session, campaign)
            finished = now.total - now.queued
            bar.update(finished - done)
            done = finished
            if not running:
                break
            # The bar moves every half second; the end is noticed sooner.
            until = time.monotonic() + 0.5
            while alive() and time.monotonic() < until:
                time.sleep(0.05)
    db.session.commit()
    click.echo(
        f"sent {now.sent}, failed {now.failed}, skipped {now.skipped}, "
        f"still queued {now.queued}"
    )


@click.command("bounces")
@click.argument("source", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--imap", "imap_url", help="imaps://user:pass@host/INBOX[?move=Done]")
@click.option("--pop3", "pop3_url", help="pop3s://user:pass@host")
@with_appcontext
def bounces_command(source: Path | None, imap_url: str | None, pop3_url: str | None):
    """Process bounces and complaints: a file (one message or an mbox), a
    maildir or folder, an IMAP or POP3 mailbox, or else BOUNCE_MAILBOX_URL.

    Messages taken from a mailbox are deleted (or moved with ?move=Folder);
    files are left as they are. A report processed before changes nothing.
    """
    from campaigns import bounces

    _require_schema()
    chosen = [s for s in (source, imap_url, pop3_url) if s]
    if len(chosen) > 1:
        raise click.UsageError("Give one source: a path, --imap or --pop3.")
    url = imap_url or pop3_url or current_app.config.get("BOUNCE_MAILBOX_URL")
    if pop3_url and not pop3_url.startswith("pop3"):
        raise click.UsageError("--pop3 takes a pop3:// or pop3s:// URL.")
    if imap_url and not imap_url.startswith("imap"):
        raise click.UsageError("--imap takes an imap:// or imaps:// URL.")
    if source is None and not url:
        raise click.UsageError(
            "Give a file or folder, --imap, --pop3 or set BOUNCE_MAILBOX_URL."
        )
    tally = bounces.Tally()
    try:
        if source is not None:
            handle = bounces.processor(db.session, "file", tally)
            for _name, raw in bounces.read_path(source):
                handle(raw)
        else:
            source_name = url.split(":", 1)[0].rstrip("s")
            bounces.read_mailbox(url, bounces.processor(db.session, source_name, tally))
    except bounces.MailboxError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_tally(tally)


def _print_tally(tally) -> None:
    actions = ", ".join(f"{n} {a}" for a, n in sorted(tally.actions.items()))
    click.echo(
        f"{tally.messages} message(s) read: {actions or 'no member changed'}; "
        f"{tally.duplicates} seen before, {tally.ignored} ignored."
    )


if __name__ == "__main__":
    main()
