-- correlation_id is the server's id of the request (ADR 0014); the caller's own X-Correlation-ID
-- is kept beside it when it was a UUID or a hex id (carebridge_shared.correlation), so it can
-- carry no name or contact detail. The check repeats that bound in the database.
ALTER TABLE audit_log ADD COLUMN client_correlation_id text
    CHECK (client_correlation_id ~ '^[0-9A-Fa-f-]{16,64}$');
