-- The trivial effect of the benchmark's carebridge stage: one row per event applied.
CREATE TABLE stage_effects (
    referral_id   uuid        PRIMARY KEY,
    patient_id    text        NOT NULL,
    assessment_id uuid        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
