-- No unique constraint on purpose: a duplicate effect must be visible to the test.
CREATE TABLE effects (
    event_id   uuid        NOT NULL,
    subject    text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
