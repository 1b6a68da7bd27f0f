-- The release job's index of pending-diamond accounts by release day, so
-- that a run reads the days it has not closed rather than every pending
-- account ever opened. The economy writes a row before it creates the
-- account, so no pending account is missing from it; rows are never updated
-- or deleted.
CREATE TABLE pending_days (
    day     TEXT NOT NULL CHECK (length(day) = 8), -- YYYYMMDD, UTC
    account TEXT NOT NULL,
    PRIMARY KEY (day, account)
);

INSERT INTO pending_days (day, account)
SELECT right(name, 8), name FROM accounts WHERE name LIKE 'DIAMOND:pending:%'
ON CONFLICT DO NOTHING;

-- The last release day the job has released and closed: no diamonds can
-- reach its pending accounts any more, so later runs start after it.
CREATE TABLE release_progress (
    id             INT  PRIMARY KEY CHECK (id = 1),
    closed_through TEXT NOT NULL -- YYYYMMDD, or '' before the first close
);

INSERT INTO release_progress (id, closed_through) VALUES (1, '');

GRANT SELECT, INSERT ON pending_days TO coinledger_writer;
GRANT SELECT, UPDATE ON release_progress TO coinledger_writer;
