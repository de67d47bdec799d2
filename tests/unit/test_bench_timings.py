"""The overload rows' figures by status, from requests.lua's timings (status -> {µs: count})."""

import random

from scripts.bench.stats import histogram_percentiles, percentiles
from scripts.bench.wrk import by_status


def test_percentiles_of_a_histogram_are_those_of_the_latencies_it_counts():
    rng = random.Random(3)
    latencies = [float(rng.randint(1, 400)) for _ in range(997)]
    counts: dict[float, int] = {}
    for value in latencies:
        counts[value] = counts.get(value, 0) + 1

    found = histogram_percentiles(counts)

    assert {f"p{p}": value for p, value in found.items()} == percentiles(latencies)
    assert histogram_percentiles({}) == {}


def test_answers_are_split_into_2xx_503_and_other_errors():
    timings = {"200": {"20000": 98, "90000": 2}, "503": {"500": 300, "4000": 5},
               "504": {"5000000": 1}}

    figures = by_status(timings, elapsed=2.0, socket_errors={"read": 2, "timeout": 1})

    assert figures["timed"] == 406 and figures["ok"] == 100 and figures["shed"] == 305
    assert figures["ok_rps"] == 50.0
    assert figures["other_errors"] == 1 + 2  # the 504 and the read errors, not wrk's timeout
    assert (figures["p50_2xx"], figures["p99_2xx"]) == (20.0, 90.0)
    assert (figures["p50_503"], figures["p99_503"]) == (0.5, 4.0)
    assert (figures["p50"], figures["p99"]) == (0.5, 20.0)


def test_no_503_means_no_shed_latency():
    figures = by_status({"200": {"1000": 5}}, elapsed=1.0, socket_errors={})

    assert figures["shed"] == 0 and figures["p99_503"] is None
    assert figures["p99_2xx"] == figures["p99"] == 1.0
