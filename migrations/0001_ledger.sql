-- The double-entry core. Portable to CockroachDB: UUID keys, CHECK
-- constraints, no sequences, triggers, PL/pgSQL or deferrable constraints.

CREATE TABLE assets (
    code  TEXT PRIMARY KEY CHECK (code ~ '^[A-Z][A-Z0-9_]{0,15}$'),
    scale INT  NOT NULL CHECK (scale BETWEEN 0 AND 18)
);

CREATE TABLE accounts (
    id             UUID        PRIMARY KEY,
    name           TEXT        NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    asset          TEXT        NOT NULL REFERENCES assets (code),
    normal_side    TEXT        NOT NULL CHECK (normal_side IN ('debit', 'credit')),
    allow_negative BOOL        NOT NULL,
    shards         INT         NOT NULL CHECK (shards BETWEEN 1 AND 64),
    status         TEXT        NOT NULL CHECK (status IN ('open', 'frozen', 'closed')),
    metadata       JSONB       NOT NULL DEFAULT '{}',
    created_at     TIMESTAMPTZ NOT NULL
);

-- An account's balance on its normal side is the sum of its shard rows.
CREATE TABLE balances (
    account_id UUID    NOT NULL REFERENCES accounts (id),
    shard      INT     NOT NULL CHECK (shard >= 0 AND shard < 64),
    balance    NUMERIC NOT NULL,
    PRIMARY KEY (account_id, shard)
);

CREATE TABLE transactions (
    id              UUID        PRIMARY KEY,
    idempotency_key TEXT        NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    fingerprint     BYTEA       NOT NULL,
    kind            TEXT        NOT NULL,
    effective_at    TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    batch_seq       INT         NOT NULL CHECK (batch_seq >= 0),
    metadata        JSONB       NOT NULL DEFAULT '{}',
    -- A transaction is reversed at most once.
    reverses        UUID        UNIQUE REFERENCES transactions (id)
);

-- No foreign keys on entries: each check is a query per entry row (the one to
-- accounts also share-locks hot account rows), together most of the cost of
-- the insert. Entries are written by the same database transaction, in the
-- same pipeline, right after their transaction rows, and only for accounts
-- whose balance rows the batch holds locked; verify reports any entry whose
-- transaction or account does not exist.
CREATE TABLE entries (
    tx_id       UUID        NOT NULL,
    idx         INT         NOT NULL CHECK (idx >= 0),
    account_id  UUID        NOT NULL,
    asset       TEXT        NOT NULL,
    side        TEXT        NOT NULL CHECK (side IN ('debit', 'credit')),
    amount      NUMERIC     NOT NULL CHECK (amount > 0),
    recorded_at TIMESTAMPTZ NOT NULL,
    batch_seq   INT         NOT NULL,
    PRIMARY KEY (tx_id, idx)
);

-- Account history in commit order: keyset pagination and balances as of a time.
CREATE INDEX entries_by_account ON entries (account_id, recorded_at, batch_seq, tx_id, idx);

-- The service writes as coinledger_writer (created by the migration runner):
-- it may add transactions and entries but never change or remove them.
GRANT SELECT ON assets, accounts, balances, transactions, entries TO coinledger_writer;
GRANT INSERT ON assets, accounts, balances, transactions, entries TO coinledger_writer;
GRANT UPDATE ON accounts, balances TO coinledger_writer;
