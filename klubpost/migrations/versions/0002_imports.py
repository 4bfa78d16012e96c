"""import job leases and resumptions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:55:00

"""

import sqlalchemy as sa
from alembic import op

import klubpost.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column(
                "lease_expires_at", klubpost.db.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("resumptions", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.create_index(
            "ix_import_job_status_id", ["status", "id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.drop_index("ix_import_job_status_id")
        batch_op.drop_column("resumptions")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
