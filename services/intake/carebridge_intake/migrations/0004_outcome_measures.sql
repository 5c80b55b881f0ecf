-- Repeat PHQ-9 / GAD-7 measures of patients in care (issue 17): answered before a follow-up
-- (through the reminder's link) or on demand, scored by the intake rules. The answers stay in
-- this table; events and the trend carry scores, bands and changes only. The baseline is the
-- patient's first intake assessment.
CREATE TABLE outcome_measures (
    assessment_id          uuid        PRIMARY KEY,
    patient_id             text        NOT NULL,
    appointment_id         uuid,       -- the follow-up it was taken before; NULL on demand
    baseline_assessment_id uuid        NOT NULL,
    state                  text        NOT NULL CHECK (state ~ '^[A-Z]{2}$'),
    phq9_answers           smallint[]  NOT NULL CHECK (
        cardinality(phq9_answers) = 9 AND array_position(phq9_answers, NULL) IS NULL
        AND 0 <= ALL (phq9_answers) AND 3 >= ALL (phq9_answers)
    ),
    gad7_answers           smallint[]  NOT NULL CHECK (
        cardinality(gad7_answers) = 7 AND array_position(gad7_answers, NULL) IS NULL
        AND 0 <= ALL (gad7_answers) AND 3 >= ALL (gad7_answers)
    ),
    cssrs_q1_wish_to_be_dead      boolean,
    cssrs_q2_suicidal_thoughts    boolean,
    cssrs_q3_method               boolean,
    cssrs_q4_intent               boolean,
    cssrs_q5_plan                 boolean,
    cssrs_q6_behaviour            boolean,
    cssrs_q6_within_past_3_months boolean,
    phq9_total             smallint    NOT NULL CHECK (phq9_total BETWEEN 0 AND 27),
    phq9_band              text        NOT NULL CHECK (
        phq9_band IN ('minimal', 'mild', 'moderate', 'moderately_severe', 'severe')
    ),
    gad7_total             smallint    NOT NULL CHECK (gad7_total BETWEEN 0 AND 21),
    gad7_band              text        NOT NULL CHECK (
        gad7_band IN ('minimal', 'mild', 'moderate', 'severe')
    ),
    item9_positive         boolean     NOT NULL,
    cssrs_imminent_risk    boolean     NOT NULL,
    safety_reasons         text[]      NOT NULL DEFAULT '{}',
    measured_at            timestamptz NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    idempotency_key        text,
    request_fingerprint    text,
    CONSTRAINT outcome_measures_cssrs_all_or_none CHECK (
        num_nulls(cssrs_q1_wish_to_be_dead, cssrs_q2_suicidal_thoughts, cssrs_q3_method,
                  cssrs_q4_intent, cssrs_q5_plan, cssrs_q6_behaviour) IN (0, 6)
    ),
    CONSTRAINT outcome_measures_key_has_fingerprint CHECK (
        (idempotency_key IS NULL) = (request_fingerprint IS NULL)
    ),
    CONSTRAINT outcome_measures_idempotency UNIQUE (patient_id, idempotency_key)
);

CREATE INDEX outcome_measures_trend ON outcome_measures (patient_id, measured_at);
CREATE INDEX assessments_patient ON assessments (patient_id, completed_at);
