-- A balance as of a settled instant (one no transaction can still be
-- recorded before: ledger.Settled) never changes, so it may be kept. A kept
-- balance bounds what a later balance as of a nearby instant sums: a hot
-- account takes an entry per gift, and a creator's statement for last month
-- would otherwise sum a month of them. Written by the balance reads that
-- summed many entries; never updated; verify checks each against the
-- entries (balance-checkpoint).
CREATE TABLE balance_checkpoints (
    account_id UUID        NOT NULL REFERENCES accounts (id),
    as_of      TIMESTAMPTZ NOT NULL,
    balance    NUMERIC     NOT NULL,
    PRIMARY KEY (account_id, as_of)
);

GRANT SELECT, INSERT ON balance_checkpoints TO coinledger_writer;
