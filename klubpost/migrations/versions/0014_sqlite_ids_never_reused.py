"""SQLite: ids that links carry are never handed out again (AUTOINCREMENT)

Links in mails carry signed row ids and never expire. Without AUTOINCREMENT,
SQLite gives a new row the id of the newest deleted one, so an erased person's
old preferences link would open the next new subscriber's data. PostgreSQL
sequences never go back: nothing to do there.

Each table is rebuilt with every row and id kept; env.py turns foreign key
enforcement off around SQLite migrations (dropping the old table must not
cascade) and checks `PRAGMA foreign_key_check` afterwards.

Revision ID: 0014
Revises: 0011
Create Date: 2026-11-23 16:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0011'
branch_labels = None
depends_on = None

# Tables whose ids go into signed tokens, VERP addresses or public links.
TABLES = (
    'club',
    'subscriber',
    'membership',
    'event',
    'campaign',
    'send_log',
    'tracked_link',
)


def _rebuild(autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        return
    # Copying the rows sets each table's mark in sqlite_sequence to its largest
    # id in use: ids above it that were deleted before this migration left no
    # trace SQLite could know of.
    for name in TABLES:
        with op.batch_alter_table(
            name,
            recreate='always',
            table_kwargs={'sqlite_autoincrement': autoincrement},
        ):
            pass


def upgrade():
    _rebuild(autoincrement=True)


def downgrade():
    _rebuild(autoincrement=False)
