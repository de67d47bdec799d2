"""The read-heavy mix's stale-read counter: it catches a stale read, and only a stale one."""

from decimal import Decimal

from scripts.bench.stale import StaleRead, StaleReadCounter


def history() -> StaleReadCounter:
    """P1 seeded at 10.00, then written 11.00 (acknowledged at t=2) and 12.00 (at t=5)."""
    counter = StaleReadCounter()
    counter.acknowledged("P1", Decimal("11.00"), completed=2.0)
    counter.acknowledged("P1", Decimal("12.00"), completed=5.0)
    return counter


def test_a_read_that_started_after_an_acknowledged_write_and_saw_an_older_value_is_stale():
    counter = history()
    counter.read("P1", Decimal("11.00"), started=6.0)  # 12.00 was acknowledged at 5

    assert counter.count() == 1
    assert counter.stale() == [StaleRead("P1", 6.0, Decimal("11.00"), Decimal("12.00"))]


def test_a_read_that_started_before_the_write_completed_may_see_the_old_value():
    counter = history()
    counter.read("P1", Decimal("11.00"), started=4.9)  # the 12.00 write was still in flight
    counter.read("P1", Decimal("10.00"), started=1.0)  # before any acknowledged write
    counter.read("P1", Decimal("11.00"), started=5.0)  # not strictly after the completion

    assert counter.count() == 0
    assert counter.reads == 3


def test_fresh_and_newer_values_are_not_stale():
    counter = history()
    counter.read("P1", Decimal("12.00"), started=9.0)
    counter.read("P1", Decimal("13.00"), started=9.0)  # a write not yet acknowledged
    counter.read("P2", Decimal("1.00"), started=9.0)   # never written

    assert counter.count() == 0


def test_only_the_stale_read_among_many_is_counted():
    counter = history()
    for started in (0.5, 2.5, 3.0, 5.5):
        counter.read("P1", Decimal("12.00"), started=started)
    counter.read("P1", Decimal("10.00"), started=3.0)  # owed 11.00: stale
    counter.read("P1", Decimal("11.00"), started=3.0)

    assert [read.value for read in counter.stale()] == [Decimal("10.00")]


def test_writes_recorded_out_of_completion_order_are_sorted():
    counter = StaleReadCounter()
    counter.acknowledged("P1", Decimal("12.00"), completed=5.0)
    counter.acknowledged("P1", Decimal("11.00"), completed=2.0)
    counter.read("P1", Decimal("11.00"), started=3.0)
    counter.read("P1", Decimal("11.00"), started=7.0)

    assert counter.count() == 1


def test_the_audit_says_how_many_reads_could_have_been_stale():
    counter = history()
    counter.read("P1", Decimal("10.00"), started=1.0)  # owed nothing yet
    counter.read("P1", Decimal("12.00"), started=6.0)
    counter.read("P1", Decimal("10.00"), started=6.0)

    stale, owing = counter.audit()
    assert owing == 2
    assert [read.value for read in stale] == [Decimal("10.00")]
