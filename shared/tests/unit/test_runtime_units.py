from __future__ import annotations

from pathlib import Path

import pytest

from carebridge_shared.consumer import RetryPolicy
from carebridge_shared.db import SHARED_MIGRATIONS, check_schema_name, discover
from carebridge_shared.kafka import bootstrap_list
from carebridge_shared.settings import ServiceSettings


def test_retry_backoff_doubles_up_to_its_ceiling() -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff=0.2, max_backoff=1.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_migrations_are_ordered_and_namespaced(tmp_path: Path) -> None:
    for name in ("0002_b.sql", "0001_a.sql", "0010_c.sql", "README.md"):
        (tmp_path / name).write_text("SELECT 1;")
    assert [m.version for m in discover(tmp_path, "service")] == [
        "service:0001_a",
        "service:0002_b",
        "service:0010_c",
    ]
    first = next(m.version for m in discover(SHARED_MIGRATIONS, "shared"))
    assert first == "shared:0001_outbox_inbox"


@pytest.mark.parametrize("bad", ["Intake", "1abc", "a-b", "a;drop", ""])
def test_schema_names_are_checked(bad: str) -> None:
    with pytest.raises(ValueError):
        check_schema_name(bad)


def test_settings_come_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:1/db")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9")
    monkeypatch.setenv("CAREBRIDGE_HTTP_PORT", "9100")
    monkeypatch.setenv("CAREBRIDGE_CONSUMER_MAX_ATTEMPTS", "7")
    settings = ServiceSettings()
    assert settings.database_url == "postgresql://u@h:1/db"
    assert settings.kafka_bootstrap_servers == "k:9"
    assert settings.http_port == 9100
    assert settings.consumer_max_attempts == 7


def test_bootstrap_list_splits_a_comma_separated_broker_list() -> None:
    assert bootstrap_list("a:1") == ["a:1"]
    assert bootstrap_list("a:1, b:2,,c:3 ") == ["a:1", "b:2", "c:3"]
