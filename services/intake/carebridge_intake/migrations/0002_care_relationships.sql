-- Which clinician treats which patient, as intake learns it from booking (a visit booked) and
-- referral (a therapist matched, a care team formed). Only for deciding who may read a
-- patient's assessments (ADR 0012); a relationship, once known, does not lapse.
CREATE TABLE care_relationships (
    patient_id    text        NOT NULL,
    clinician_id  text        NOT NULL,
    source        text        NOT NULL CHECK (source IN (
        'appointment', 'therapist_match', 'care_team')),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, clinician_id)
);
