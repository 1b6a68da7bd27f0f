-- The idempotency keys of the admin's status writes (BlockViewer,
-- UnblockViewer). A key is claimed before the statuses change and marked done
-- after: a retry of a request that a crash interrupted finishes it, while a
-- retry of a finished one changes nothing (a viewer unblocked since stays
-- unblocked), and the key with another request is refused.
CREATE TABLE admin_keys (
    idempotency_key TEXT    PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 1 AND 128),
    request         TEXT    NOT NULL,
    done            BOOLEAN NOT NULL DEFAULT false
);

GRANT SELECT, INSERT, UPDATE ON admin_keys TO coinledger_writer;
