"""`qis up` with QIS_METRICS_ADDRESS: one Prometheus endpoint per process, never one address for
all (the second process to bind it would fail to start)."""

from __future__ import annotations

from qis_cli.up import FEEDS, SERVICES, metrics_address


def test_each_process_gets_the_next_port() -> None:
    addresses = [metrics_address("127.0.0.1:9464", spec) for spec in (*SERVICES, FEEDS)]
    assert [s.script for s in (*SERVICES, FEEDS)] == [
        "qis-command",
        "qis-projector",
        "qis-query",
        "qis-feeds",
    ]
    assert addresses == ["127.0.0.1:9464", "127.0.0.1:9465", "127.0.0.1:9466", "127.0.0.1:9467"]


def test_port_zero_stays_a_free_port_each() -> None:
    assert {metrics_address("[::1]:0", spec) for spec in SERVICES} == {"[::1]:0"}
