-- A canceled operation's status (and its error's type) is spelled `canceled`, as Azure's API
-- guidelines and generic pollers such as azure-core's spell it; it was `cancelled`.
ALTER TABLE keel_operations DROP CONSTRAINT keel_operations_status_check;

UPDATE keel_operations SET status = 'canceled' WHERE status = 'cancelled';

UPDATE keel_operations
SET error = (error::jsonb
             || jsonb_build_object('type', 'canceled', 'title', 'The operation was canceled',
                                   'detail', 'canceled at the client''s request'))::json
WHERE error->>'type' = 'cancelled';

UPDATE keel_operations
SET error = (error::jsonb || jsonb_build_object('title', 'The operation was canceled'))::json
WHERE error->>'type' = 'shutdown' AND error->>'title' = 'The operation was cancelled';

ALTER TABLE keel_operations
    ADD CONSTRAINT keel_operations_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled'));
