from __future__ import annotations

import pytest

import carebridge_contracts
from carebridge_contracts import GapDetector, SequenceVerdict, Topic

A = Topic.APPOINTMENTS
P = "pat-1"


def test_in_order_stream_is_all_next() -> None:
    detector = GapDetector()
    for seq in range(1, 6):
        result = detector.observe(A, P, seq)
        assert result.is_next and result.verdict is SequenceVerdict.NEXT
        assert list(result.missing) == []
    assert detector.last_seen(A, P) == 5


def test_duplicate_and_old() -> None:
    detector = GapDetector()
    detector.observe(A, P, 1)
    detector.observe(A, P, 2)
    for seq in (1, 2):
        result = detector.observe(A, P, seq)
        assert result.is_duplicate
        assert result.last_seen == 2
    assert detector.last_seen(A, P) == 2


def test_gap_reports_missing_range() -> None:
    detector = GapDetector()
    detector.observe(A, P, 1)
    result = detector.observe(A, P, 5)
    assert result.is_gap
    assert result.missing == range(2, 5)
    assert result.last_seen == 1
    assert detector.last_seen(A, P) == 5
    assert detector.observe(A, P, 6).is_next
    assert detector.observe(A, P, 3).is_duplicate  # a late arrival from the gap is "old"


def test_first_message_gap_when_expecting_one() -> None:
    result = GapDetector().check(A, P, 3)
    assert result.is_gap and result.missing == range(1, 3) and result.last_seen is None


def test_first_message_is_baseline_when_joining_mid_stream() -> None:
    detector = GapDetector(expect_first=None)
    assert detector.observe(A, P, 40).is_next
    assert detector.observe(A, P, 42).missing == range(41, 42)


def test_check_does_not_record() -> None:
    detector = GapDetector()
    assert detector.check(A, P, 1).is_next
    assert detector.check(A, P, 1).is_next
    assert detector.last_seen(A, P) is None


def test_streams_are_independent_per_topic_and_subject() -> None:
    detector = GapDetector()
    detector.observe(A, P, 1)
    assert detector.observe(A, "pat-2", 1).is_next
    assert detector.observe(Topic.REFERRALS, P, 1).is_next
    assert detector.observe(A, P, 2).is_next


def test_seed_and_record() -> None:
    detector = GapDetector()
    detector.seed(A, P, 10)
    assert detector.check(A, P, 11).is_next
    assert detector.check(A, P, 10).is_duplicate
    detector.record(A, P, 15)
    detector.record(A, P, 12)
    assert detector.last_seen(A, P) == 15


@pytest.mark.parametrize("bad", [0, -1])
def test_sequence_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError):
        GapDetector().check(A, P, bad)
    with pytest.raises(ValueError):
        GapDetector(expect_first=bad)


def test_repeat_measure_events_are_covered_by_gap_detection() -> None:
    """Measurement-based care events share the assessments stream's per-patient sequence: a
    subscriber that missed an OutcomeMeasured between the intake and a SymptomsWorsened sees
    the gap."""
    from carebridge_contracts import OutcomeMeasured, SymptomsWorsened, topic_for

    topic = topic_for(OutcomeMeasured)
    assert topic_for(SymptomsWorsened) is topic is Topic.ASSESSMENTS
    detector = GapDetector()
    assert detector.observe(topic, P, 1).is_next  # AssessmentCompleted
    assert detector.observe(topic, P, 2).is_next  # OutcomeMeasured, improving
    result = detector.observe(topic, P, 4)  # SymptomsWorsened; the OutcomeMeasured (3) is lost
    assert result.is_gap and result.missing == range(3, 4)
    offered = topic_for(carebridge_contracts.EarlierFollowUpOffered)
    assert offered is Topic.APPOINTMENTS
    assert detector.observe(offered, P, 1).is_next
