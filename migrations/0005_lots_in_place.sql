-- A gift relieves a lot, changing units_left. While units_left sat in the
-- predicate of the open-lots index, PostgreSQL could not update a lot in
-- place (a HOT update): every relief added entries to both of the table's
-- indexes. is_open is units_left > 0, kept by the database; it changes once,
-- when the lot is used up, so the reliefs before that update in place.
-- (Room on the page for them: the lots fill factor, set by the migrator on
-- PostgreSQL.) The index on it is the next migration: CockroachDB refuses a
-- partial index on a column added in the same transaction.
ALTER TABLE lots ADD COLUMN is_open BOOL GENERATED ALWAYS AS (units_left > 0) STORED;
