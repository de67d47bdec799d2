"""The product store's side of a MongoDB replica set (part of the store: it imports pymongo).

The client writes with majority write concern (an acknowledged write survives a failover),
retries a write or a read once itself (retryable writes and reads), checks the servers every
second rather than every ten (a new primary is found sooner), and waits up to a set time for a
primary per operation. What is left, a step-down longer than that or a retry that failed too, is
`is_transient` for the store's own bounded retry (services/common/storeretry.py).
"""

from __future__ import annotations

from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect, OperationFailure

from services.common.storeretry import StoreRetry

HEARTBEAT_MS = 1000
# Server answers of a node that is not (or no longer) the primary, or is going away.
_NOT_PRIMARY_CODES = frozenset({
    10107,   # NotWritablePrimary
    13435,   # NotPrimaryNoSecondaryOk
    11602,   # InterruptedDueToReplStateChange
    189,     # PrimarySteppedDown
    91,      # ShutdownInProgress
    11600,   # InterruptedAtShutdown
})


def replica_set_client(uri: str, *, server_selection_timeout: float) -> AsyncMongoClient:
    """The store's client (these options win over the same ones in the URI)."""
    return AsyncMongoClient(
        uri, tz_aware=True, serverSelectionTimeoutMS=int(server_selection_timeout * 1000),
        w="majority", retryWrites=True, retryReads=True, heartbeatFrequencyMS=HEARTBEAT_MS)


def is_transient(error: BaseException) -> bool:
    """Whether `error` says the primary is away (a step-down, an election, a lost connection):
    NotPrimaryError, NetworkTimeout and ServerSelectionTimeoutError are all AutoReconnect."""
    if isinstance(error, AutoReconnect):
        return True
    return isinstance(error, OperationFailure) and (
        error.code in _NOT_PRIMARY_CODES or error.has_error_label("RetryableWriteError"))


def mongo_retry(seconds: float = 5.0) -> StoreRetry:
    """The retry of MongoDB operations safe to repeat."""
    return StoreRetry(is_transient, seconds=seconds, database="MongoDB")
