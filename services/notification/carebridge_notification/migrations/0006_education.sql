-- Patient education (issue 17): which step's message each patient received, from which
-- template version, caused by which event. One row per patient and step: a step is taught once.
CREATE TABLE education_records (
    patient_id       text        NOT NULL,
    step             text        NOT NULL CHECK (step IN (
        'assessment', 'referral', 'match', 'first_follow_up')),
    template         text        NOT NULL,
    template_version integer     NOT NULL CHECK (template_version >= 1),
    cause_event_id   uuid        NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, step)
);
