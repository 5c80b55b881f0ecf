-- Intake assessments: the answers, the scores derived from them, and the idempotency key.
CREATE TABLE assessments (
    assessment_id       uuid        PRIMARY KEY,
    patient_id          text        NOT NULL,
    state               text        NOT NULL CHECK (state ~ '^[A-Z]{2}$'),
    phq9_answers        smallint[]  NOT NULL CHECK (
        cardinality(phq9_answers) = 9 AND array_position(phq9_answers, NULL) IS NULL
        AND 0 <= ALL (phq9_answers) AND 3 >= ALL (phq9_answers)
    ),
    gad7_answers        smallint[]  NOT NULL CHECK (
        cardinality(gad7_answers) = 7 AND array_position(gad7_answers, NULL) IS NULL
        AND 0 <= ALL (gad7_answers) AND 3 >= ALL (gad7_answers)
    ),
    -- C-SSRS screener, all NULL when it was not taken.
    cssrs_q1_wish_to_be_dead      boolean,
    cssrs_q2_suicidal_thoughts    boolean,
    cssrs_q3_method               boolean,
    cssrs_q4_intent               boolean,
    cssrs_q5_plan                 boolean,
    cssrs_q6_behaviour            boolean,
    cssrs_q6_within_past_3_months boolean,
    phq9_total          smallint    NOT NULL CHECK (phq9_total BETWEEN 0 AND 27),
    phq9_band           text        NOT NULL CHECK (
        phq9_band IN ('minimal', 'mild', 'moderate', 'moderately_severe', 'severe')
    ),
    gad7_total          smallint    NOT NULL CHECK (gad7_total BETWEEN 0 AND 21),
    gad7_band           text        NOT NULL CHECK (
        gad7_band IN ('minimal', 'mild', 'moderate', 'severe')
    ),
    item9_positive      boolean     NOT NULL,
    cssrs_imminent_risk boolean     NOT NULL,
    safety_reasons      text[]      NOT NULL DEFAULT '{}',
    therapy_interest    boolean     NOT NULL,
    preferred_channel   text        NOT NULL CHECK (preferred_channel IN ('email', 'sms')),
    completed_at        timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    idempotency_key     text,
    request_fingerprint text,
    CONSTRAINT assessments_cssrs_all_or_none CHECK (
        num_nulls(cssrs_q1_wish_to_be_dead, cssrs_q2_suicidal_thoughts, cssrs_q3_method,
                  cssrs_q4_intent, cssrs_q5_plan, cssrs_q6_behaviour) IN (0, 6)
    ),
    CONSTRAINT assessments_key_has_fingerprint CHECK (
        (idempotency_key IS NULL) = (request_fingerprint IS NULL)
    ),
    -- A retried POST with the same Idempotency-Key for the same patient finds its first row.
    CONSTRAINT assessments_idempotency UNIQUE (patient_id, idempotency_key)
);
