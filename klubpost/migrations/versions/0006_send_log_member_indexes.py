"""send log: index the member columns that erasure and club deletion update

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 12:55:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('send_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_send_log_subscriber_id'), ['subscriber_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_send_log_membership_id'), ['membership_id'], unique=False)


def downgrade():
    with op.batch_alter_table('send_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_send_log_membership_id'))
        batch_op.drop_index(batch_op.f('ix_send_log_subscriber_id'))
