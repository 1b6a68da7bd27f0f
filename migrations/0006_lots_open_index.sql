-- The open-lots index on is_open (see 0005), replacing the one whose
-- predicate named units_left. IF [NOT] EXISTS: a database that ran the first
-- form of 0005, which also did this, converges.
CREATE INDEX IF NOT EXISTS lots_open_by_account ON lots (account_id, opened_at, batch_seq, id) WHERE is_open;
DROP INDEX IF EXISTS lots_open;
