-- No foreign keys on lot_reliefs, for the reason entries have none (0001):
-- each check is a query per relief row that also share-locks the referenced
-- transaction and lot rows, which writes a WAL record per lock. Reliefs are
-- written only by the commit batch that inserts their transaction and updates
-- their lot, in the same database transaction; verify reports any relief whose
-- transaction or lot does not exist (orphan-relief). Dropping them measured
-- +6% gifts/s (docs/benchmarks.md, "Fourth pass: lot reliefs without foreign keys").
-- Both spellings: PostgreSQL and current CockroachDB name them *_fkey, older
-- CockroachDB fk_<column>_ref_<table>.
ALTER TABLE lot_reliefs DROP CONSTRAINT IF EXISTS lot_reliefs_tx_id_fkey;
ALTER TABLE lot_reliefs DROP CONSTRAINT IF EXISTS lot_reliefs_lot_id_fkey;
ALTER TABLE lot_reliefs DROP CONSTRAINT IF EXISTS fk_tx_id_ref_transactions;
ALTER TABLE lot_reliefs DROP CONSTRAINT IF EXISTS fk_lot_id_ref_lots;
