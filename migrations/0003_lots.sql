-- FIFO lots: units credited to an account together with the value they carry
-- in another asset (coins bought, and the deferred revenue they are worth).
-- Relief consumes the oldest lots first. units_left and value_left are derived
-- state like balances, changed only inside commit batches; lot_reliefs records
-- each relief immutably, and verify checks both against the ledger.

CREATE TABLE lots (
    id               UUID        PRIMARY KEY REFERENCES transactions (id),
    account_id       UUID        NOT NULL, -- holds the units (a coin wallet)
    opened_at        TIMESTAMPTZ NOT NULL,
    batch_seq        INT         NOT NULL,
    units            NUMERIC     NOT NULL CHECK (units > 0),
    units_left       NUMERIC     NOT NULL CHECK (units_left >= 0 AND units_left <= units),
    value_account_id UUID        NOT NULL, -- holds the value (deferred revenue)
    value_asset      TEXT        NOT NULL,
    value            NUMERIC     NOT NULL CHECK (value > 0),
    value_left       NUMERIC     NOT NULL CHECK (value_left >= 0 AND value_left <= value)
);

CREATE INDEX lots_open ON lots (account_id, opened_at, batch_seq, id) WHERE units_left > 0;

CREATE TABLE lot_reliefs (
    tx_id  UUID    NOT NULL REFERENCES transactions (id),
    lot_id UUID    NOT NULL REFERENCES lots (id),
    units  NUMERIC NOT NULL CHECK (units > 0),
    value  NUMERIC NOT NULL CHECK (value >= 0),
    PRIMARY KEY (tx_id, lot_id)
);

GRANT SELECT, INSERT, UPDATE ON lots TO coinledger_writer;
GRANT SELECT, INSERT ON lot_reliefs TO coinledger_writer;
