-- Per-shard accounts (carries), lot refunds and lot restores, creators.
--
-- per_shard: each balance row of the account must stay in range on its own,
-- and a commit lane reads and writes only its own row (see carry.go), so a
-- creator's fractional-diamond carry never makes lanes wait on each other.
ALTER TABLE accounts ADD COLUMN per_shard BOOL NOT NULL DEFAULT false;

-- refunded: units of the lot given back to the store (spent or not). Unspent
-- units can never exceed the units not refunded, so a restore (a reversed
-- gift) cannot put coins back into a lot that was refunded meanwhile.
ALTER TABLE lots ADD COLUMN refunded NUMERIC NOT NULL DEFAULT 0;
ALTER TABLE lots ADD CONSTRAINT lots_refunded_range CHECK (refunded >= 0 AND units_left <= units - refunded);

-- A reversal records the reliefs it undoes as negative rows, and a refund
-- records the units it refunded, so each lot's state stays the sum of its
-- immutable relief rows.
ALTER TABLE lot_reliefs ADD COLUMN refunded NUMERIC NOT NULL DEFAULT 0;
ALTER TABLE lot_reliefs DROP CONSTRAINT IF EXISTS lot_reliefs_units_check;
ALTER TABLE lot_reliefs DROP CONSTRAINT IF EXISTS lot_reliefs_value_check;
ALTER TABLE lot_reliefs DROP CONSTRAINT IF EXISTS check_units;
ALTER TABLE lot_reliefs DROP CONSTRAINT IF EXISTS check_value;
ALTER TABLE lot_reliefs ADD CONSTRAINT lot_reliefs_moves CHECK (units <> 0 OR refunded <> 0);
CREATE INDEX lot_reliefs_lot ON lot_reliefs (lot_id);

-- Creators who may receive gifts. Reference data: inserted, never rewritten.
CREATE TABLE creators (
    id            TEXT        PRIMARY KEY,
    registered_at TIMESTAMPTZ NOT NULL
);
GRANT SELECT, INSERT ON creators TO coinledger_writer;
