-- Care teams as referral announces them (CareTeamFormed / CareTeamEnded on the referrals topic),
-- so a CarePlanUpdated can be told to the other members. Ids only: no names, no plan content.

-- The current members of each patient's care team: one row per clinician and patient.
-- A member who leaves is deleted (CareTeamEnded removes the therapist; a new team replaces the
-- therapist, and the psychiatrist when it names one). See the README for the rules.
CREATE TABLE care_team_members (
    patient_id      text        NOT NULL,
    clinician_id    text        NOT NULL,
    role            text        NOT NULL CHECK (role IN ('psychiatrist', 'therapist')),
    care_team_id    uuid        NOT NULL,  -- the team that (last) named this member
    joined_at       timestamptz NOT NULL,  -- occurred_at of the CareTeamFormed that added them
    joined_event_id uuid        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, clinician_id)
);

-- Plan changes seen (version, section codes, author id: never content), so that a member whose
-- CareTeamFormed is applied after a change it preceded (another topic, no common order) is
-- still told, and so a member's removal can find its pending notices.
CREATE TABLE care_plan_changes (
    event_id         uuid        PRIMARY KEY,  -- the CarePlanUpdated event
    patient_id       text        NOT NULL,
    correlation_id   uuid        NOT NULL,
    plan_version     integer     NOT NULL CHECK (plan_version >= 1),
    changed_sections text[]      NOT NULL,
    author_id        text        NOT NULL,
    author_role      text        NOT NULL CHECK (author_role IN ('psychiatrist', 'therapist')),
    occurred_at      timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX care_plan_changes_patient ON care_plan_changes (patient_id, occurred_at);

-- Pending notices of one recipient about one patient (cancelled when the member leaves).
CREATE INDEX deliveries_patient_recipient ON deliveries (patient_id, recipient_id, template)
    WHERE status = 'pending';
