-- The outcome trend shown with the shared plan (issue 17): the intake assessment (the baseline,
-- from AssessmentCompleted) and each repeat measure (OutcomeMeasured), as intake scored them.
-- Scores, bands and the published verdicts only; the answers never leave intake.
CREATE TABLE outcome_measures (
    assessment_id           uuid        PRIMARY KEY,
    patient_id              text        NOT NULL,
    kind                    text        NOT NULL CHECK (kind IN ('intake', 'repeat')),
    measured_at             timestamptz NOT NULL,
    phq9_total              smallint    NOT NULL CHECK (phq9_total BETWEEN 0 AND 27),
    phq9_band               text        NOT NULL,
    gad7_total              smallint    NOT NULL CHECK (gad7_total BETWEEN 0 AND 21),
    gad7_band               text        NOT NULL,
    -- Repeat measures only (NULL for the intake): against the baseline intake named.
    baseline_assessment_id  uuid,
    phq9_change             smallint,
    gad7_change             smallint,
    phq9_meaningful_change  boolean,
    gad7_meaningful_change  boolean,
    phq9_response           boolean,
    phq9_remission          boolean,
    gad7_response           boolean,
    gad7_remission          boolean,
    CONSTRAINT outcome_measures_repeat_has_change CHECK (
        (kind = 'intake') = (baseline_assessment_id IS NULL)
    )
);

CREATE INDEX outcome_measures_trend ON outcome_measures (patient_id, measured_at);
