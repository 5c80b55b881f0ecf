-- Who read or changed a clinical record, when (ADR 0012). Ids and codes only, never content.
-- Append-only: rows are written in the transaction of the read or change they record, and the
-- triggers below refuse every UPDATE, DELETE and TRUNCATE, whoever asks.
CREATE TABLE audit_log (
    id             bigserial   PRIMARY KEY,
    occurred_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_sub      text        NOT NULL,
    actor_role     text        NOT NULL CHECK (actor_role IN (
        'patient', 'clinician', 'coordinator', 'ops')),
    action         text        NOT NULL,
    resource_type  text        NOT NULL,
    resource_id    text        NOT NULL,
    patient_id     text,
    correlation_id uuid        NOT NULL
);
CREATE INDEX audit_log_by_patient ON audit_log (patient_id, id);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
