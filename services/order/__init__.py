"""The Order service: places orders that never oversell, never charge twice and never leak stock.

Life cycle of an order (the `status` column):

    pending --(reserved, charged, committed)--> confirmed --> shipped --> delivered
       |                                            |
       +--(any step failed, or abandoned)--> failed  +--> cancelled (UpdateOrder or DeleteOrder)

- `pending` is written first, in its own transaction, with the idempotency key: the unique index
  on (customer, idempotency_key) decides which of several racing calls places the order.
- Stock is reserved with Product.ReserveStock under reservation id = order id, and the charge is
  made with the order id as the processor's idempotency key, so every step can be repeated and
  undone by id alone.
- `confirmed` is set by a conditional UPDATE (WHERE status = 'pending') in the same transaction
  that writes the items; losing that race (the reconciler gave the order up) undoes the steps.
- Only confirmed, shipped, delivered and cancelled orders are visible; pending and failed rows
  are kept for idempotency and audit, deleted ones (`deleted_at`) for audit.

Crash guarantee: a reconciler in every instance (services/order/reconciler.py) marks orders
still pending after `order_pending_timeout_seconds` as failed and releases their stock and
refunds their charge; it also finishes any release, refund or stock commit that an instance did
not complete (`settled_at` is null). A reservation taken by an instance that died is therefore
given back at the latest `order_pending_timeout_seconds + reconcile_interval_seconds` after the
crash. The timeout must exceed the longest placement (a few upstream timeouts).
"""
