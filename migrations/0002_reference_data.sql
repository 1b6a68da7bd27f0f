-- Reference data of the coin economy. Every table is a list of versions keyed
-- by effective time; versions are added, never rewritten: the writer role has
-- INSERT and SELECT only.

CREATE TABLE coin_packs (
    pack_id      TEXT        NOT NULL CHECK (length(pack_id) BETWEEN 1 AND 64),
    channel      TEXT        NOT NULL CHECK (channel IN ('apple', 'google', 'web')),
    effective_at TIMESTAMPTZ NOT NULL,
    coins        BIGINT      NOT NULL CHECK (coins > 0),
    prices       JSONB       NOT NULL, -- {"USD": "19.99", "JPY": "3000"}
    fee_rate     NUMERIC     NOT NULL CHECK (fee_rate >= 0 AND fee_rate < 1),
    recorded_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (pack_id, channel, effective_at)
);

CREATE TABLE gifts (
    gift_id      TEXT        NOT NULL CHECK (length(gift_id) BETWEEN 1 AND 64),
    effective_at TIMESTAMPTZ NOT NULL,
    coins        BIGINT      NOT NULL CHECK (coins > 0),
    recorded_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (gift_id, effective_at)
);

CREATE TABLE share_rules (
    creator          TEXT        NOT NULL, -- '' is the platform default
    effective_at     TIMESTAMPTZ NOT NULL,
    creator_share    NUMERIC     NOT NULL CHECK (creator_share > 0 AND creator_share <= 1),
    agency           TEXT        NOT NULL, -- '' when none
    agency_share     NUMERIC     NOT NULL CHECK (agency_share >= 0 AND agency_share <= 1),
    holding_seconds  BIGINT      NOT NULL CHECK (holding_seconds >= 0),
    diamond_value    NUMERIC     NOT NULL CHECK (diamond_value > 0),
    diamond_currency TEXT        NOT NULL,
    recorded_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (creator, effective_at)
);

GRANT SELECT, INSERT ON coin_packs, gifts, share_rules TO coinledger_writer;

-- A live-shopping session's terms, fixed when the session is set up: the
-- platform's commission rate and the partner's share of each sale.
CREATE TABLE live_sessions (
    session_id    TEXT        PRIMARY KEY CHECK (length(session_id) BETWEEN 1 AND 64),
    seller        TEXT        NOT NULL,
    partner       TEXT        NOT NULL, -- '' when none
    platform_rate NUMERIC     NOT NULL CHECK (platform_rate >= 0 AND platform_rate < 1),
    partner_share NUMERIC     NOT NULL CHECK (partner_share >= 0 AND partner_share < 1),
    recorded_at   TIMESTAMPTZ NOT NULL,
    CHECK (platform_rate + partner_share < 1)
);

GRANT SELECT, INSERT ON live_sessions TO coinledger_writer;
