-- 009_signature_staff_id: the signer's staff identifier (postgres 010).
ALTER TABLE signatures ADD COLUMN staff_id TEXT NOT NULL DEFAULT '';
