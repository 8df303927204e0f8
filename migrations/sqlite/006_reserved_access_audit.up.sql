-- 006: reserved for the access-audit hash chain (another branch). This
-- placeholder only keeps the version sequence without a gap until that
-- migration lands; replace this file with it when merging.
SELECT 1;
