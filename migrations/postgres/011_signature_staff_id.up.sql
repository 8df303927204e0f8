-- 011_signature_staff_id (numbered 010 in this dialect before the two shared one numbering): the signer's staff identifier, from the token
-- claim the site configures (--staff-id-claim); '' when none was
-- configured or the token had none. Exports send it as the signer.
ALTER TABLE signatures ADD COLUMN staff_id text NOT NULL DEFAULT '';
