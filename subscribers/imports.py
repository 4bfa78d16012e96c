"""CSV import of members into a club."""

from __future__ import annotations

from sqlalchemy.orm import Session


def run_pending_imports(session: Session) -> int:
    """Process queued imports; returns how many were worked on."""
    return 0
