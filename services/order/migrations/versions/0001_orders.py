"""Orders, order items, and the simulated payment processor's ledger.

Revision ID: order_0001
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "order_0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = "('pending', 'confirmed', 'shipped', 'delivered', 'cancelled', 'failed')"


def _stamp(name: str, *, nullable: bool = False) -> sa.Column:
    default = None if nullable else sa.func.now()
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("customer", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("total", sa.Numeric(12, 2), nullable=False, server_default="0"),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("shipping_address", sa.Text, nullable=False, server_default=""),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("payment_reference", sa.Text, nullable=False, server_default=""),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("request_hash", sa.Text, nullable=False),
        # Why a failed order failed: replayed to retries with its idempotency key.
        sa.Column("failure", JSONB),
        _stamp("created_at"), _stamp("updated_at"),
        _stamp("deleted_at", nullable=True),
        # When the release/refund (failed, cancelled) or stock commit (shipped) was done.
        _stamp("settled_at", nullable=True),
        sa.CheckConstraint(f"status IN {STATUSES}", name="orders_status_check"),
        sa.CheckConstraint("total >= 0", name="orders_total_check"),
    )
    # The arbiter of concurrent CreateOrder calls carrying one idempotency key.
    op.create_index("orders_idempotency_key", "orders", ["customer", "idempotency_key"],
                    unique=True, postgresql_where=sa.text("idempotency_key IS NOT NULL"))
    op.create_index("orders_customer_created", "orders",
                    ["customer", sa.text("created_at DESC"), sa.text("id DESC")])
    op.create_index("orders_created", "orders", [sa.text("created_at DESC"), sa.text("id DESC")])
    op.create_index("orders_status_created", "orders", ["status", "created_at"])
    op.create_index("orders_unsettled", "orders", ["updated_at"], postgresql_where=sa.text(
        "settled_at IS NULL AND status IN ('failed', 'cancelled', 'shipped', 'delivered')"))

    op.create_table(
        "order_items",
        sa.Column("order_id", sa.Text, sa.ForeignKey("orders.id"), primary_key=True),
        sa.Column("product_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("unit_price", sa.Numeric(12, 2), nullable=False),
        sa.Column("line_total", sa.Numeric(12, 2), nullable=False),
        sa.CheckConstraint("quantity > 0", name="order_items_quantity_check"),
    )

    op.create_table(
        "simulated_payments",
        sa.Column("id", sa.Text, primary_key=True),
        # One charge per order: the order id is the charge's idempotency key.
        sa.Column("order_id", sa.Text, nullable=False, unique=True),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        _stamp("created_at"),
        _stamp("refunded_at", nullable=True),
        sa.CheckConstraint("status IN ('captured', 'refunded')",
                           name="simulated_payments_status_check"),
    )


def downgrade() -> None:
    op.drop_table("simulated_payments")
    op.drop_table("order_items")
    op.drop_table("orders")
