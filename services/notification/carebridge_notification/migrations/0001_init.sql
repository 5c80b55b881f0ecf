-- Contact details (PHI) live only here; they never reach an event or a log line.
CREATE TABLE contacts (
    recipient_kind    text        NOT NULL CHECK (recipient_kind IN ('patient', 'clinician')),
    recipient_id      text        NOT NULL,
    email             text,
    phone             text,
    preferred_channel text        NOT NULL DEFAULT 'email'
                                  CHECK (preferred_channel IN ('email', 'sms')),
    -- 'api' (set through PUT /v1/contacts), 'assessment' (AssessmentCompleted) or 'default'.
    channel_source    text        NOT NULL DEFAULT 'default'
                                  CHECK (channel_source IN ('api', 'assessment', 'default')),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (recipient_kind, recipient_id)
);

-- One row per message to one recipient on one channel, caused by one event.
CREATE TABLE deliveries (
    id                     uuid        PRIMARY KEY,  -- also the e-mail Message-ID
    cause_event_id         uuid        NOT NULL,
    cause_event_type       text        NOT NULL,
    correlation_id         uuid        NOT NULL,
    patient_id             text        NOT NULL,
    appointment_id         uuid,
    recipient_kind         text        NOT NULL CHECK (recipient_kind IN ('patient', 'clinician')),
    recipient_id           text        NOT NULL,
    channel                text        NOT NULL CHECK (channel IN ('email', 'sms')),
    template               text        NOT NULL,
    kind                   text        NOT NULL
                                       CHECK (kind IN ('confirmation', 'notice', 'reminder', 'alert')),
    params                 jsonb       NOT NULL,  -- ids, times and codes only
    status                 text        NOT NULL DEFAULT 'pending'
                                       CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    priority               smallint    NOT NULL,
    due_at                 timestamptz NOT NULL,
    attempts               integer     NOT NULL DEFAULT 0,
    next_attempt_at        timestamptz NOT NULL,
    last_error_code        text,
    sent_at                timestamptz,
    failed_at              timestamptz,
    cancelled_by_event_id  uuid,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cause_event_id, recipient_kind, recipient_id, channel, template)
);

-- The dispatcher's queue: urgent first, then oldest due.
CREATE INDEX deliveries_queue ON deliveries (priority, due_at) WHERE status = 'pending';
CREATE INDEX deliveries_appointment ON deliveries (appointment_id) WHERE appointment_id IS NOT NULL;
CREATE INDEX deliveries_patient ON deliveries (patient_id);
