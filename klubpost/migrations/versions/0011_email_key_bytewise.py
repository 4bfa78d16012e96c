"""subscriber: address keys compared byte for byte on PostgreSQL

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 13:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    # SQLite already compares text byte for byte (BINARY): nothing to do there.
    if op.get_bind().dialect.name != 'postgresql':
        return
    # Rebuilds the unique index on (library_id, email_key); the rows stay.
    op.alter_column(
        'subscriber',
        'email_key',
        type_=sa.String(length=320, collation='C'),
        existing_type=sa.String(length=320),
        existing_nullable=False,
    )


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.alter_column(
        'subscriber',
        'email_key',
        type_=sa.String(length=320),
        existing_type=sa.String(length=320, collation='C'),
        existing_nullable=False,
    )
