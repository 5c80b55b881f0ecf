-- Therapist matches learnt from referral (TherapistMatched, CareTeamEnded). A patient with
-- any match books therapy intakes only with a therapist whose match has not ended.
CREATE TABLE therapist_matches (
    referral_id  uuid        PRIMARY KEY,
    patient_id   text        NOT NULL,
    therapist_id text        NOT NULL,
    matched_at   timestamptz NOT NULL DEFAULT now(),
    ended_at     timestamptz
);
CREATE INDEX therapist_matches_by_patient ON therapist_matches (patient_id);
