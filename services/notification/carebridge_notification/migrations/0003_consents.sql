-- The patient's consents as referral announces them (ConsentGranted / ConsentRevoked on the
-- consents topic, keyed by patient): the latest state per scope. A therapist is not told of
-- plan changes while `care_plan_sharing` is revoked; no row means no consent event seen yet
-- (today's behaviour: referral forms a care team only after consent is granted).
CREATE TABLE consents (
    patient_id text        NOT NULL,
    scope      text        NOT NULL,
    granted    boolean     NOT NULL,
    updated_at timestamptz NOT NULL,  -- occurred_at of the event that set `granted`
    PRIMARY KEY (patient_id, scope)
);
