"""Staff pages for CSV import (upload, mapping, progress, report) and export."""

from __future__ import annotations

from collections.abc import Iterator

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from accounts.models import Role
from klubpost.auth import acting_user, get_owned, role_required
from klubpost.db import MAX_PAGE, db
from subscribers import imports
from subscribers.csvfiles import (
    DELIMITERS,
    ENCODINGS,
    ROLES,
    csv_download,
    decode_as,
    preview,
    role_label,
)
from subscribers.exports import export_rows
from subscribers.models import Club, ImportIssue, ImportJob, ImportStatus

bp = Blueprint("imports", __name__)

# Room for the multipart framing and the form's other fields around the file.
FORM_OVERHEAD = 64 * 1024
ISSUES_PER_PAGE = 50
STREAM_BATCH = 1000

OUTCOME_LABELS = {
    imports.IMPORTED: _l("imported"),
    imports.INVALID_EMAIL: _l("not a valid e-mail address"),
    imports.INVALID_ROW: _l("invalid row"),
    imports.DUPLICATE: _l("duplicate in the file"),
    imports.SUPPRESSED: _l("erased earlier; not imported"),
    imports.ALREADY_MEMBER: _l("already a member"),
    imports.LEFT_CLUB: _l("unsubscribed or bounced earlier; not added again"),
}
STATUS_LABELS = {
    ImportStatus.UPLOADED: _l("waiting for the column mapping"),
    ImportStatus.QUEUED: _l("waiting to start"),
    ImportStatus.RUNNING: _l("running"),
    ImportStatus.DONE: _l("done"),
    ImportStatus.FAILED: _l("failed"),
}


@bp.url_value_preprocessor
def _limit_upload_size(endpoint: str | None, values: dict | None) -> None:
    """Refuse an oversized upload before its body is read (the check runs first)."""
    if endpoint == "imports.upload" and request.method == "POST":
        request.max_content_length = (
            current_app.config["IMPORT_MAX_BYTES"] + FORM_OVERHEAD
        )


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(_exc):
    return render_template(
        "errors/error.html", code=413, message=_too_large_message()
    ), 413


def _too_large_message() -> str:
    return _(
        "The file is too large: at most %(size)s can be imported at once. "
        "Split it into smaller files.",
        size=max_upload_size(),
    )


def max_upload_size() -> str:
    """The upload limit for people: "20 MB"."""
    limit = current_app.config["IMPORT_MAX_BYTES"]
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):.3g} MB"
    return f"{limit / 1024:.3g} KB"


@bp.app_template_global()
def import_status_label(status: ImportStatus) -> str:
    """An import's status in the page's language."""
    return str(STATUS_LABELS[ImportStatus(status)])


@bp.app_template_global()
def outcome_label(outcome: str) -> str:
    """What happened to an imported row, in the page's language."""
    return str(OUTCOME_LABELS.get(outcome, outcome))


def _job(club_id: int, job_id: int) -> tuple[Club, ImportJob]:
    club = get_owned(Club, club_id)
    job = get_owned(ImportJob, job_id)
    if job.club_id != club.id:
        abort(404)
    return club, job


@bp.get("/clubs/<int:club_id>/imports")
@role_required(Role.EDITOR)
def index(club_id: int):
    """The upload form and the club's earlier imports."""
    club = get_owned(Club, club_id)
    return _index_page(club)


def _index_page(club: Club, error: str | None = None, status: int = 200):
    jobs = db.session.scalars(
        select(ImportJob)
        .where(ImportJob.club_id == club.id)
        .order_by(ImportJob.id.desc())
        .limit(20)
    ).all()
    return render_template(
        "subscribers/imports.html",
        club=club,
        jobs=jobs,
        encodings=ENCODINGS,
        delimiters=DELIMITERS,
        error=error,
        max_size=max_upload_size(),
    ), status


@bp.post("/clubs/<int:club_id>/imports")
@role_required(Role.EDITOR)
def upload(club_id: int):
    """Store an uploaded CSV file and go on to the column mapping."""
    club = get_owned(Club, club_id)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _index_page(club, _("Choose a CSV file to upload."), 400)
    limit = current_app.config["IMPORT_MAX_BYTES"]
    content = upload.stream.read(limit + 1)
    if len(content) > limit:
        raise RequestEntityTooLarge()
    try:
        job = imports.create_job(
            db.session,
            club,
            filename=upload.filename,
            content=content,
            created_by_id=acting_user().id,
            encoding=request.form.get("encoding", "auto"),
            delimiter=request.form.get("delimiter", "auto"),
        )
    except imports.ImportRefused as exc:
        db.session.rollback()
        return _index_page(club, exc.message, 400)
    db.session.commit()
    return redirect(url_for("imports.mapping", club_id=club.id, job_id=job.id))


@bp.route("/clubs/<int:club_id>/imports/<int:job_id>/mapping", methods=["GET", "POST"])
@role_required(Role.EDITOR)
def mapping(club_id: int, job_id: int):
    """Say what each column holds and whether the people gave consent; start."""
    club, job = _job(club_id, job_id)
    if job.status != ImportStatus.UPLOADED:
        return redirect(url_for("imports.show", club_id=club.id, job_id=job.id))
    if request.method == "GET":
        return _mapping_page(club, job, job.mapping["roles"])
    if request.form.get("action") == "reread":
        try:
            imports.reread_job(
                db.session,
                job,
                request.form.get("encoding", ""),
                request.form.get("delimiter", ""),
            )
        except imports.ImportRefused as exc:
            db.session.rollback()
            return _mapping_page(club, job, job.mapping["roles"], exc.message, 400)
        db.session.commit()
        return redirect(url_for("imports.mapping", club_id=club.id, job_id=job.id))
    roles = [request.form.get(f"role_{i}", "") for i in range(len(job.columns))]
    consent = request.form.get("consent")
    if consent not in ("yes", "no"):
        error = _("Answer whether these people have given their consent.")
        return _mapping_page(club, job, roles, error, 400)
    try:
        imports.queue_job(db.session, job, roles, consent_given=consent == "yes")
    except imports.ImportRefused as exc:
        db.session.rollback()
        return _mapping_page(club, job, roles, exc.message, 400)
    db.session.commit()
    return redirect(url_for("imports.show", club_id=club.id, job_id=job.id))


def _mapping_page(
    club: Club,
    job: ImportJob,
    roles: list[str],
    error: str | None = None,
    status: int = 200,
):
    rows = preview(decode_as(job.content, job.encoding), job.delimiter)
    samples = [
        [row[i] if i < len(row) else "" for row in rows]
        for i in range(len(job.columns))
    ]
    return render_template(
        "subscribers/import_mapping.html",
        club=club,
        job=job,
        columns=list(zip(job.columns, roles, samples, strict=False)),
        role_choices=[(r, role_label(r)) for r in ROLES],
        encodings=ENCODINGS,
        delimiters=DELIMITERS,
        consent=request.form.get("consent"),
        error=error,
    ), status


@bp.get("/clubs/<int:club_id>/imports/<int:job_id>")
@role_required(Role.EDITOR)
def show(club_id: int, job_id: int):
    """The progress bar while the import runs, then its report."""
    club, job = _job(club_id, job_id)
    if job.status == ImportStatus.UPLOADED:
        return redirect(url_for("imports.mapping", club_id=club.id, job_id=job.id))
    page = min(max(request.args.get("page", 1, type=int), 1), MAX_PAGE)
    issues = db.paginate(
        select(ImportIssue)
        .where(ImportIssue.job_id == job.id)
        .order_by(ImportIssue.row_number, ImportIssue.id),
        page=page,
        per_page=ISSUES_PER_PAGE,
        error_out=False,
    )
    counts = {k: v for k, v in (job.counts or {}).items() if k in OUTCOME_LABELS}
    return render_template(
        "subscribers/import_job.html",
        club=club,
        job=job,
        counts=counts,
        issues=issues,
        finished=job.status in (ImportStatus.DONE, ImportStatus.FAILED),
    )


@bp.get("/clubs/<int:club_id>/imports/<int:job_id>/status")
@role_required(Role.EDITOR)
def status(club_id: int, job_id: int):
    """Progress as JSON, for the progress bar."""
    _club, job = _job(club_id, job_id)
    return jsonify(
        status=job.status.value,
        label=import_status_label(job.status),
        processed_rows=job.processed_rows,
        total_rows=job.total_rows,
        counts=job.counts or {},
        finished=job.status in (ImportStatus.DONE, ImportStatus.FAILED),
    )


@bp.get("/clubs/<int:club_id>/imports/<int:job_id>/report.csv")
@role_required(Role.EDITOR)
def report_csv(club_id: int, job_id: int):
    """Every row that was not imported, with the reason, as CSV."""
    _club, job = _job(club_id, job_id)
    return csv_download(_report_lines(job.id), f"import-{job.id}-report.csv")


def _report_lines(job_id: int) -> Iterator[list[str]]:
    yield ["row", "email", "outcome", "message"]
    last = (0, 0)
    while True:
        issues = db.session.execute(
            select(
                ImportIssue.row_number,
                ImportIssue.id,
                ImportIssue.email,
                ImportIssue.outcome,
                ImportIssue.message,
            )
            .where(ImportIssue.job_id == job_id)
            .where(
                (ImportIssue.row_number > last[0])
                | ((ImportIssue.row_number == last[0]) & (ImportIssue.id > last[1]))
            )
            .order_by(ImportIssue.row_number, ImportIssue.id)
            .limit(STREAM_BATCH)
        ).all()
        if not issues:
            return
        for row, _id, email, outcome, message in issues:
            yield [str(row), email, outcome, message]
        last = (issues[-1].row_number, issues[-1].id)


@bp.get("/clubs/<int:club_id>/export.csv")
@role_required(Role.EDITOR)
def export(club_id: int):
    """The club's members as CSV (UTF-8 with BOM, for Excel), streamed."""
    club = get_owned(Club, club_id)
    return csv_download(export_rows(db.session, club.id), f"{club.slug}-members.csv")
