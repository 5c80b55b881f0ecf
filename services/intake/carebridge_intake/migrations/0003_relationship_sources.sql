-- Relationships end (ADR 0015): intake keeps each reason a clinician treats a patient, per
-- source record, so that the reason can end: a visit (its appointment id) until it is
-- cancelled, a care team membership (its care team id) until the team ends or the member
-- leaves. A clinician treats the patient while any of their reasons is active.
CREATE TABLE care_relationship_sources (
    patient_id   text        NOT NULL,
    clinician_id text        NOT NULL,
    source_kind  text        NOT NULL CHECK (source_kind IN (
        'appointment', 'care_team', 'carried_over')),
    source_id    text        NOT NULL,  -- the appointment or care team id; '' when carried over
    active       boolean     NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, clinician_id, source_kind, source_id)
);

-- care_relationships knew only that a relationship had begun, not through which record. Each
-- row is carried over as one reason of its own, which ends when an event ends any reason of
-- the same clinician for the same patient (a cancelled visit, a team that ended, a member who
-- left).
INSERT INTO care_relationship_sources (patient_id, clinician_id, source_kind, source_id, active)
SELECT patient_id, clinician_id, 'carried_over', '', true FROM care_relationships;

DROP TABLE care_relationships;
