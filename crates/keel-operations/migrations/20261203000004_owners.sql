-- Every operation has an owner: the caller that submitted it (an API key's id; `anonymous` with
-- auth off, as every operation stored before owners were recorded was submitted).
ALTER TABLE keel_operations ADD COLUMN owner text NOT NULL DEFAULT 'anonymous';
ALTER TABLE keel_operations ALTER COLUMN owner DROP DEFAULT;

-- A caller's listing, newest first.
CREATE INDEX keel_operations_owner ON keel_operations (owner, seq);

-- Idempotency keys are per caller: the store keeps them as `<owner> <key>`.
UPDATE keel_idempotency_keys SET key = 'anonymous ' || key;
