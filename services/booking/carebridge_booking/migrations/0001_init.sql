-- Booking: clinician directory, patient eligibility (from intake events), appointments.

-- btree_gist lets one exclusion constraint mix `=` on text with `&&` on time ranges.
-- It lives in public so every schema's search path sees its operator classes.
CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;

CREATE TABLE clinicians (
    id            text        PRIMARY KEY,
    role          text        NOT NULL CHECK (role IN ('psychiatrist', 'therapist')),
    time_zone     text        NOT NULL,
    -- {"mon": [{"start": "09:00", "end": "17:00"}], ...}: wall-clock times in time_zone.
    working_hours jsonb       NOT NULL DEFAULT '{}'::jsonb,
    modalities    text[]      NOT NULL DEFAULT '{}',
    capacity      integer     NOT NULL DEFAULT 0 CHECK (capacity >= 0),
    active        boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE clinician_licences (
    clinician_id text NOT NULL REFERENCES clinicians (id) ON DELETE CASCADE,
    state        text NOT NULL CHECK (state ~ '^[A-Z]{2}$'),
    expires_on   date,
    PRIMARY KEY (clinician_id, state)
);
CREATE INDEX clinician_licences_by_state ON clinician_licences (state);

-- What booking learnt from intake: whether the assessment is done, whether risk is imminent.
CREATE TABLE patient_eligibility (
    patient_id              text        PRIMARY KEY,
    assessment_id           uuid,
    assessment_completed_at timestamptz,
    urgent_review_required  boolean     NOT NULL DEFAULT false,
    risk_flagged_at         timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE appointments (
    id             uuid        PRIMARY KEY,
    patient_id     text        NOT NULL,
    clinician_id   text        NOT NULL REFERENCES clinicians (id),
    clinician_role text        NOT NULL CHECK (clinician_role IN ('psychiatrist', 'therapist')),
    visit_type     text        NOT NULL CHECK (visit_type IN (
        'initial_psychiatric_evaluation', 'psychiatric_follow_up',
        'therapy_intake', 'therapy_session')),
    state          text        NOT NULL CHECK (state ~ '^[A-Z]{2}$'),
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    status         text        NOT NULL CHECK (status IN (
        'proposed', 'booked', 'cancelled', 'noshow', 'fulfilled')),
    cancelled_by   text,
    cancel_reason  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT appointments_interval CHECK (ends_at > starts_at),
    -- No clinician is double booked, whatever races the API loses.
    CONSTRAINT appointments_clinician_no_overlap EXCLUDE USING gist (
        clinician_id WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&
    ) WHERE (status = 'booked'),
    -- Nor is a patient booked with two clinicians at once.
    CONSTRAINT appointments_patient_no_overlap EXCLUDE USING gist (
        patient_id WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&
    ) WHERE (status = 'booked')
);
CREATE INDEX appointments_by_patient ON appointments (patient_id, starts_at);
CREATE INDEX appointments_by_clinician ON appointments (clinician_id, starts_at);
-- One pending initial evaluation per patient.
CREATE UNIQUE INDEX appointments_one_booked_initial_evaluation ON appointments (patient_id)
    WHERE status = 'booked' AND visit_type = 'initial_psychiatric_evaluation';
