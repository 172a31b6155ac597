-- The audit records actions on API keys too (their creation and revocation), which concern no
-- projection.
ALTER TABLE eventline_audit ALTER COLUMN projection DROP NOT NULL;
