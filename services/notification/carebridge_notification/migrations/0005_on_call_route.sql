-- Where urgent safety alerts go (ADR 0015): a primary and an escalation address, set only by
-- ops (PUT /v1/on-call-route, audited) or once by the bootstrap setting when none exists.
-- One row at most; while there is none, /readyz answers 503 (check on_call_route).
CREATE TABLE on_call_route (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    primary_email    text        NOT NULL,
    escalation_email text        NOT NULL,
    set_by_sub       text        NOT NULL,
    set_by_role      text        NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
