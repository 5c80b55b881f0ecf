-- Referral: the therapists' matching view, referrals (FHIR ServiceRequest), care teams,
-- consents, what referral learnt about each patient's psychiatrist, and shared care plans.

-- Matching view of the therapist roster (booking keeps the scheduling view; see ADR 0004).
CREATE TABLE therapists (
    id             text        PRIMARY KEY,
    licence_states text[]      NOT NULL DEFAULT '{}',
    modalities     text[]      NOT NULL DEFAULT '{}',
    capacity       integer     NOT NULL CHECK (capacity >= 0),
    active         boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE referrals (
    id                      uuid        PRIMARY KEY,
    patient_id              text        NOT NULL,
    state                   text        NOT NULL CHECK (state ~ '^[A-Z]{2}$'),
    modality                text        NOT NULL CHECK (modality IN (
        'CBT', 'DBT', 'EMDR', 'IPT', 'ACT', 'psychodynamic')),
    urgency                 text        NOT NULL CHECK (urgency IN ('routine', 'urgent')),
    requested_by            text        NOT NULL CHECK (requested_by IN ('psychiatrist', 'intake')),
    requesting_clinician_id text,
    -- The assessment an intake-driven referral came from: one referral per assessment.
    assessment_id           uuid        UNIQUE,
    status                  text        NOT NULL CHECK (status IN (
        'draft', 'active', 'on-hold', 'revoked', 'completed')),
    hold_reason             text        CHECK (hold_reason IN (
        'no_capacity', 'no_licensed_therapist', 'awaiting_consent')),
    therapist_id            text        REFERENCES therapists (id),
    care_team_id            uuid,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    matched_at              timestamptz,
    closed_at               timestamptz,
    CONSTRAINT referrals_hold_reason CHECK ((status = 'on-hold') = (hold_reason IS NOT NULL)),
    CONSTRAINT referrals_psychiatrist_named CHECK (
        requested_by <> 'psychiatrist' OR requesting_clinician_id IS NOT NULL),
    CONSTRAINT referrals_completed_were_matched CHECK (
        status <> 'completed' OR therapist_id IS NOT NULL),
    CONSTRAINT referrals_on_hold_unmatched CHECK (status <> 'on-hold' OR therapist_id IS NULL)
);
-- One open referral per patient, whatever races the API and the intake consumer lose.
CREATE UNIQUE INDEX referrals_one_open_per_patient ON referrals (patient_id)
    WHERE status IN ('draft', 'active', 'on-hold');
-- The matching queue: open and not yet matched.
CREATE INDEX referrals_waiting ON referrals (created_at)
    WHERE therapist_id IS NULL AND status IN ('active', 'on-hold');
CREATE INDEX referrals_by_patient ON referrals (patient_id, created_at);

-- A matched referral's team: psychiatrist + therapist + patient. Active while the referral is.
CREATE TABLE care_teams (
    id              uuid        PRIMARY KEY,
    patient_id      text        NOT NULL,
    referral_id     uuid        NOT NULL UNIQUE REFERENCES referrals (id),
    psychiatrist_id text,
    therapist_id    text        NOT NULL REFERENCES therapists (id),
    status          text        NOT NULL CHECK (status IN ('active', 'ended')),
    end_reason      text        CHECK (end_reason IN ('completed', 'revoked')),
    formed_at       timestamptz NOT NULL,
    ended_at        timestamptz,
    CONSTRAINT care_teams_end CHECK ((status = 'ended') = (ended_at IS NOT NULL))
);
CREATE UNIQUE INDEX care_teams_one_active_per_patient ON care_teams (patient_id)
    WHERE status = 'active';
-- A therapist's load is the number of their active care teams.
CREATE INDEX care_teams_active_by_therapist ON care_teams (therapist_id) WHERE status = 'active';

-- The patient's psychiatrist as referral learnt it (a referring psychiatrist, or the
-- psychiatrist of a completed or booked psychiatric visit).
CREATE TABLE patient_psychiatrists (
    patient_id      text        PRIMARY KEY,
    psychiatrist_id text        NOT NULL,
    source          text        NOT NULL CHECK (source IN (
        'referral', 'visit_completed', 'visit_booked')),
    appointment_id  uuid,
    observed_at     timestamptz NOT NULL
);

-- The current consent per patient and scope (a new grant after a revocation gets a new id).
CREATE TABLE consents (
    patient_id text        NOT NULL,
    scope      text        NOT NULL CHECK (scope IN ('care_plan_sharing')),
    consent_id uuid        NOT NULL UNIQUE,
    status     text        NOT NULL CHECK (status IN ('granted', 'revoked')),
    granted_at timestamptz NOT NULL,
    revoked_at timestamptz,
    PRIMARY KEY (patient_id, scope),
    CONSTRAINT consents_revoked_at CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);

-- The shared treatment plan: clinicians' content, so free text lives here and nowhere else
-- (never in events or logs). Psychotherapy notes are not part of it.
CREATE TABLE care_plans (
    patient_id  text        PRIMARY KEY,
    version     integer     NOT NULL CHECK (version >= 1),
    content     jsonb       NOT NULL,
    author_id   text        NOT NULL,
    author_role text        NOT NULL CHECK (author_role IN ('psychiatrist', 'therapist')),
    updated_at  timestamptz NOT NULL
);

-- Every version ever written, for audit.
CREATE TABLE care_plan_versions (
    patient_id       text        NOT NULL,
    version          integer     NOT NULL CHECK (version >= 1),
    content          jsonb       NOT NULL,
    changed_sections text[]      NOT NULL,
    author_id        text        NOT NULL,
    author_role      text        NOT NULL CHECK (author_role IN ('psychiatrist', 'therapist')),
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (patient_id, version)
);

-- The matching lock: every transaction that may assign a therapist, or change who could be
-- assigned, first locks this one row FOR UPDATE. Matching is then one critical section across
-- replicas: loads are counted and the queue is served (urgent first, then oldest) by one
-- transaction at a time, so no therapist is assigned beyond capacity.
CREATE TABLE matching_lock (
    id integer PRIMARY KEY CHECK (id = 1)
);
INSERT INTO matching_lock (id) VALUES (1);
