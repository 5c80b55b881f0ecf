-- Who the patient's psychiatrists are, learnt per appointment from booking's events (ADR 0015)
-- instead of one row per patient that a referral could overwrite. A clinician is one of the
-- patient's psychiatrists while they have a psychiatric visit with them that is not cancelled;
-- the current psychiatrist is the one of the most recent such visit.
CREATE TABLE psychiatric_visits (
    appointment_id  uuid        PRIMARY KEY,
    patient_id      text        NOT NULL,
    psychiatrist_id text        NOT NULL,
    status          text        NOT NULL CHECK (status IN (
        'booked', 'fulfilled', 'noshow', 'cancelled')),
    starts_at       timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX psychiatric_visits_standing ON psychiatric_visits (patient_id, starts_at DESC)
    WHERE status <> 'cancelled';

-- patient_psychiatrists held one psychiatrist per patient. Rows learnt from a visit become that
-- visit; a row a referral wrote (no appointment: the referring psychiatrist overwrote what visits
-- said) is carried over as it was, and counts only until referral learns any psychiatric visit
-- of the patient (see store.PSYCHIATRISTS).
INSERT INTO psychiatric_visits (appointment_id, patient_id, psychiatrist_id, status, starts_at)
SELECT appointment_id, patient_id, psychiatrist_id,
       CASE source WHEN 'visit_completed' THEN 'fulfilled' ELSE 'booked' END, observed_at
FROM patient_psychiatrists
WHERE source IN ('visit_booked', 'visit_completed') AND appointment_id IS NOT NULL;

CREATE TABLE carried_over_psychiatrists (
    patient_id      text        PRIMARY KEY,
    psychiatrist_id text        NOT NULL,
    observed_at     timestamptz NOT NULL
);
INSERT INTO carried_over_psychiatrists (patient_id, psychiatrist_id, observed_at)
SELECT patient_id, psychiatrist_id, observed_at
FROM patient_psychiatrists
WHERE source = 'referral' OR appointment_id IS NULL;

DROP TABLE patient_psychiatrists;
