-- The idempotency keys of the catalog's Add calls. A version is also keyed by
-- its effective time, but a call that leaves that time to the server ("now"
-- plus the lead) would, retried, publish its terms again, later: possibly
-- over a version published in between. A retry under a recorded key is
-- answered with the version first published; another request under it is
-- refused. `request` is what the key stands for (kind, terms and the
-- effective time as asked, empty when left to the server); rows are never
-- updated or deleted.
CREATE TABLE catalog_keys (
    idempotency_key TEXT        PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 1 AND 128),
    request         TEXT        NOT NULL,
    effective_at    TIMESTAMPTZ NOT NULL
);

GRANT SELECT, INSERT ON catalog_keys TO coinledger_writer;
