-- Plumbing every service keeps in its own schema (search_path points at it).
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    event_id      uuid        NOT NULL UNIQUE,
    topic         text        NOT NULL,
    message_key   text        NOT NULL,
    event_type    text        NOT NULL,
    event_version integer     NOT NULL,
    payload       bytea       NOT NULL,
    headers       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Per patient per topic sequence numbers, so subscribers can detect gaps.
CREATE TABLE stream_sequences (
    topic         text   NOT NULL,
    subject       text   NOT NULL,
    last_sequence bigint NOT NULL,
    PRIMARY KEY (topic, subject)
);

-- Events a consumer has applied, recorded in the same transaction as the effect.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
