"""a campaign's audience is written in chunks while it sends

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-23 19:30:00.000000

"""
from alembic import op
import sqlalchemy as sa

import klubpost.db


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    # Campaigns started before this have their whole audience written: NULL.
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.add_column(sa.Column('audience_fixed_at', klubpost.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('audience_size', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('audience_after', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.drop_column('audience_after')
        batch_op.drop_column('audience_size')
        batch_op.drop_column('audience_fixed_at')
