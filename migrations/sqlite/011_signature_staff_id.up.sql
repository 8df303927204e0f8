-- 011_signature_staff_id (numbered 009 in this dialect before the two shared one numbering): the signer's staff identifier (postgres 011).
ALTER TABLE signatures ADD COLUMN staff_id TEXT NOT NULL DEFAULT '';
