"""The bench's pieces in a tiny configuration, so `make bench` cannot rot unnoticed: the
open-loop schedule, the sink's receive times, the step summary and every report output.
Nothing here measures or asserts speed."""

from __future__ import annotations

import asyncio
import json
import smtplib
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from rich.console import Console

from carebridge_bench import report
from carebridge_bench.config import BenchConfig
from carebridge_bench.journeys import Journey, run_step
from carebridge_bench.run import base_report, finish_report, journeys_section, throughput_section
from carebridge_bench.sweep import StepResult, highest_rate_within, stop_reason, summarise_step
from carebridge_bench.throughput import ThroughputResult
from carebridge_bench.timeline import TARGET_STAGE, Instants, MailReader
from carebridge_devstack.smtp_sink import SmtpSink
from carebridge_notification.domain.planning import BOOKED_PATIENT


class GatedRunner:
    """Journeys that only finish once all of them have started: a generator that waited for
    answers before starting the next journey would never get there."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.started = 0
        self.all_started = asyncio.Event()

    def plan(self, step: int, index: int, scheduled: float) -> Journey:
        return Journey(index, f"p{step}-{index}", "c", 2, scheduled)

    async def run(self, journey: Journey, timeout: float) -> None:
        journey.started = time.time()
        self.started += 1
        if self.started == self.count:
            self.all_started.set()
        await self.all_started.wait()


async def test_journeys_start_on_schedule_without_waiting_for_answers() -> None:
    runner = GatedRunner(count=20)
    async with asyncio.timeout(60):
        run = await run_step(runner, step=0, rate=200.0, seconds=0.1, first_index=0)
    assert len(run.journeys) == 20
    assert run.max_in_flight == 20
    gaps = [b.scheduled - a.scheduled for a, b in zip(run.journeys, run.journeys[1:], strict=False)]
    assert gaps == pytest.approx([1 / 200] * 19, abs=1e-6)  # epoch floats: ~0.1 µs steps
    assert all(j.started is not None and j.started >= j.scheduled for j in run.journeys)


def _send(sink: SmtpSink, to: str, template: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@clinic.test", to, "Booked"
    message["X-Carebridge-Template"] = template
    message.set_content("see you")
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
        smtp.send_message(message)


def test_the_confirmation_time_is_when_the_sink_received_it(tmp_path: Path) -> None:
    with SmtpSink(tmp_path / "mail") as sink:
        before = time.time()
        _send(sink, "p1@patients.example", "appointment_reminder")
        _send(sink, "p1@patients.example", BOOKED_PATIENT)
        after = time.time()
        reader = MailReader(tmp_path / "mail")
        assert reader.poll() == 2
        assert reader.poll() == 0  # files are read once
        at = reader.confirmation_at("P1@patients.example")
        assert at is not None and before <= at <= after
        assert sink.messages[1].received_at == at
        assert reader.confirmation_at("p2@patients.example") is None


class StubMail(MailReader):
    def __init__(self, confirmations: dict[str, float]) -> None:
        super().__init__(Path("/nonexistent"))
        self.received = {a: [(BOOKED_PATIENT, at)] for a, at in confirmations.items()}


def _step(rate: float, email_after_booking: float, *, lost: int = 0) -> StepResult:
    """A step of 10 journeys whose confirmation arrives `email_after_booking` s after booking;
    the last `lost` journeys never get theirs."""
    journeys, topics, mail = [], {}, {}
    for i in range(10):
        t = 1000.0 + i
        journey = Journey(i, f"p{i}", "c", 2, scheduled=t, started=t + 0.001)
        journey.assess_sent, journey.assess_done = t, t + 0.02
        journey.book_sent, journey.book_done = t + 0.2, t + 0.25
        journeys.append(journey)
        topics[journey.patient_id] = Instants({"assessment_event": t + 0.05})
        if i < 10 - lost:
            mail[journey.email] = t + 0.2 + email_after_booking
    from carebridge_bench.journeys import StepRun

    run = StepRun(rate=rate, seconds=10.0, journeys=journeys, max_in_flight=3, started_at=1000.0)
    result = summarise_step(run, topics, StubMail(mail))
    result.stop_reason = stop_reason(result, 500.0)
    return result


def test_a_step_is_summarised_per_stage() -> None:
    result = _step(10, 0.1)
    email = result.stages[TARGET_STAGE]
    assert email is not None and email.count == 10
    assert email.p50 == pytest.approx(100.0) and email.max == pytest.approx(100.0)
    end_to_end = result.stages["end to end: assessment -> confirmation email"]
    assert end_to_end is not None and end_to_end.p99 == pytest.approx(300.0)
    event = result.stages["assessment -> AssessmentCompleted on topic"]
    assert event is not None and event.p50 == pytest.approx(50.0)
    assert result.stages["booking -> AppointmentBooked on topic"] is None  # never seen
    assert (result.scheduled, result.booked, result.confirmed) == (10, 10, 10)
    assert result.stop_reason is None

    slow, lossy = _step(25, 0.7), _step(50, 0.1, lost=2)
    assert slow.stop_reason is not None and "p99" in slow.stop_reason
    assert lossy.errors == {"booked but no confirmation email": 2}
    assert lossy.stop_reason is not None and "not confirmed" in lossy.stop_reason
    assert highest_rate_within([result, slow, lossy], 500.0) == 10


def _report(tmp_path: Path) -> report.Report:
    document = base_report(
        BenchConfig.quick_preset(),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        startup={"kafka_s": 4.0, "postgres_s": 2.0, "stack_s": 4.1, "services_ready_s": 9.0},
        commit="abc1234",
        load_average=(0.5, 0.4, 0.3),
    )
    baseline = ThroughputResult("baseline", 100, 100, 598, 598.0, 8000.0, 0.01)
    stage = ThroughputResult("stage", 10, 10, 598, 507.0, 2000.0, 0.005)
    document["throughput"] = throughput_section(baseline, stage)
    document["journeys"] = journeys_section([_step(10, 0.1), _step(25, 0.2)], tmp_path)
    document["cpu_seconds_under_load"] = {"notification": 4.0, "postgres": 2.0}
    document["memory_mb"] = {
        "idle": {"intake": 80.0, "booking": 85.0},
        "peak_under_load": {"intake": 90.0, "booking": 160.0, "load generator": 300.0},
    }
    return document


def test_reports_from_a_run_document(tmp_path: Path) -> None:
    document = _report(tmp_path)
    console = Console(record=True, width=200)
    run_file = finish_report(document, tmp_path / "results", "20260102T030405Z", console)

    # issue 16's targets: stage >= 35 % of raw, p99 <= 150 ms at 25/s, saturation >= 50/s
    met = {t["name"]: t["met"] for t in document["targets"]}
    assert met["stage throughput / raw Kafka loop (median)"] is False  # 25 %
    assert met["stage throughput / minimal exactly-once loop (median)"] is None  # not run
    assert met["booking -> email p99 at 25 journeys/s"] is False  # 200 ms
    assert met["RSS of each service under load"] is False  # booking 160 MB (the bench not counted)
    saturation = next(t for t in document["targets"] if t["name"].startswith("saturation"))
    assert (saturation["measured"], saturation["met"]) == ("25 journeys/s", False)
    # 6 CPU seconds of notification and PostgreSQL over 20 confirmed journeys
    assert document["headline"] == {
        "stage_vs_minimal": None,
        "stage_vs_raw": 0.25,
        "system_cpu_ms_per_journey": 300.0,
        "saturation_journeys_per_s": 25,
    }

    text = console.export_text()
    for expected in ("raw aiokafka loop", "25.0%", TARGET_STAGE, "missed", "160", "200.0"):
        assert expected in text
    assert json.loads(run_file.read_text()) == json.loads(json.dumps(document, default=str))
    latest = tmp_path / "results" / "latest.json"
    assert latest.read_text() == run_file.read_text()
    for png in ("20260102T030405Z.png", "latest.png"):
        assert (tmp_path / "results" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{report.README_START}\nold\n{report.README_END}\n\nafter\n")
    assert report.write_readme(readme, document)
    updated = readme.read_text()
    assert "old" not in updated and updated.endswith(f"{report.README_END}\n\nafter\n")
    assert "| 25 | 10/10 | 200 / 200 / 200 / 200 | 400 / 400 |" in updated
    assert not report.write_readme(tmp_path / "results" / "latest.json", document)


def test_repeats_alternate_and_ratios_are_taken_within_a_repeat() -> None:
    from carebridge_bench import throughput

    assert throughput.order_of_repeat(0) == ("baseline", "minimal", "stage")
    assert throughput.order_of_repeat(1) == ("stage", "minimal", "baseline")

    def run(kind: str, rate: float) -> ThroughputResult:
        return ThroughputResult(kind, 100, 100, 600, 600.0, rate, 1.0, {"worker": 0.5})

    # a slow second repeat (a noisy machine) slows every kind: the ratios stay 50 % and 25 %
    repeats = [
        {"baseline": run("baseline", 4000.0), "minimal": run("minimal", 2000.0),
         "stage": run("stage", 1000.0)},
        {"baseline": run("baseline", 2000.0), "minimal": run("minimal", 1000.0),
         "stage": run("stage", 500.0)},
        {"baseline": run("baseline", 3000.0), "minimal": run("minimal", 1500.0),
         "stage": run("stage", 750.0)},
    ]  # fmt: skip
    section = throughput.summarise_repeats(repeats)
    assert section["stage_vs_minimal"] == {
        "n": 3, "median": 0.5, "min": 0.5, "max": 0.5, "spread": 0.0
    }  # fmt: skip
    assert section["stage_vs_raw"]["median"] == 0.25
    assert section["stage"]["per_second_repeats"] == {
        "n": 3, "median": 750.0, "min": 500.0, "max": 1000.0, "spread": round(500 / 750, 4)
    }  # fmt: skip
    assert section["stage"]["cpu_ms_per_event"] == {"worker": 5.0}
    assert report.headline({"throughput": section})["stage_vs_minimal"] == 0.5


def test_system_cpu_per_journey_is_read_at_the_busiest_step_that_kept_up() -> None:
    def step(rate: float, confirmed: int, cpu: dict[str, float]) -> dict[str, object]:
        return {"offered_per_s": rate, "confirmed": confirmed, "cpu_seconds": cpu}

    document = {
        "journeys": {
            "highest_rate_within_limit": 10,
            "steps": [
                step(5, 100, {"booking": 3.0, "kafka": 2.0, "load generator": 9.0}),
                step(10, 200, {"booking": 3.0, "kafka": 2.0, "smtp sink": 9.0}),
                step(15, 150, {"booking": 9.0, "kafka": 9.0}),  # saturated
            ],
        }
    }
    # 5 s of booking and Kafka over the 200 journeys of the 10/s step; not the bench's own
    assert report.system_cpu_ms_per_journey(document) == 25.0


def test_cpu_per_journey_splits_off_the_idle_cost_and_names_the_generator() -> None:
    document = {
        "idle_cpu_ms_per_s": {"kafka": 30.0, "booking": 10.0, "load generator": 1.0},
        "journeys": {
            "highest_rate_within_limit": 10,
            "steps": [
                {
                    "offered_per_s": 10,
                    "confirmed": 200,
                    "cpu_window_s": 25.0,
                    "cpu_seconds": {"kafka": 3.0, "booking": 5.0, "load generator": 4.0},
                }
            ],
        },
    }
    split = report.cpu_per_journey(document)
    assert split is not None
    assert split["system_ms"] == 40.0  # 8 s over 200 journeys
    assert split["system_idle_ms_per_s"] == 40.0  # kafka + booking, not the generator
    assert split["system_idle_share_ms"] == 5.0  # 40 ms/s x 25 s over 200 journeys
    assert split["system_less_idle_ms"] == 35.0
    assert split["load_generator_ms"] == 20.0
    assert "idle cost 40 ms/s" in report.cpu_split_line(split)
    assert report.cpu_per_journey({"journeys": {"steps": []}}) is None


def test_the_idle_cost_is_read_after_the_sweep_when_it_was_measured_then() -> None:
    step = {"offered_per_s": 5, "confirmed": 100, "cpu_window_s": 20.0,
            "cpu_seconds": {"kafka": 4.0}}  # fmt: skip
    document = {
        "idle_cpu_ms_per_s": {"kafka": 100.0},  # Kafka still compiling
        "idle_cpu_ms_per_s_after_sweep": {"kafka": 30.0},
        "journeys": {"highest_rate_within_limit": 5, "steps": [step]},
    }
    split = report.cpu_per_journey(document)
    assert split is not None and split["system_idle_share_ms"] == 6.0  # 30 ms/s x 20 s / 100
