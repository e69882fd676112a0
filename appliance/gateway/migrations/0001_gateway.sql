-- gateway 0001: what the model gateway did for each agent's request, and
-- each month's totals per agent, from which budgets are reloaded when
-- omertad starts.
--
-- Rows are written in batches off the request path (see
-- appliance/gateway/doc.go, "Usage"); budgets are enforced from memory and
-- never wait for these writes.
CREATE TABLE gateway_usage (
    id                INTEGER PRIMARY KEY,
    at                TEXT    NOT NULL,                 -- when the request arrived
    agent_id          TEXT    NOT NULL,
    tenant            TEXT    NOT NULL,
    endpoint          TEXT    NOT NULL CHECK (endpoint IN ('chat', 'completions', 'embeddings')),
    model             TEXT    NOT NULL,                 -- as the agent asked ('' when the body was unreadable)
    backend           TEXT    NOT NULL DEFAULT '',      -- the backend that answered; '' when none did
    status            INTEGER NOT NULL,                 -- the HTTP status the agent got (499: it went away)
    code              TEXT    NOT NULL DEFAULT '',      -- the refusal or failure code; '' when a backend answered
    stream            INTEGER NOT NULL CHECK (stream IN (0, 1)),
    attempts          INTEGER NOT NULL CHECK (attempts >= 0), -- backends tried
    prompt_tokens     INTEGER,                          -- NULL: the backend did not report usage
    completion_tokens INTEGER,
    charged_tokens    INTEGER NOT NULL CHECK (charged_tokens >= 0), -- what budgets were charged: reported, or the estimate
    cost_nano_usd     INTEGER NOT NULL CHECK (cost_nano_usd >= 0),
    latency_us        INTEGER NOT NULL CHECK (latency_us >= 0)
) STRICT;

CREATE INDEX gateway_usage_agent ON gateway_usage (agent_id, at);
CREATE INDEX gateway_usage_at ON gateway_usage (at);

CREATE TABLE gateway_usage_monthly (
    month             TEXT    NOT NULL,                 -- YYYY-MM, UTC
    agent_id          TEXT    NOT NULL,
    tenant            TEXT    NOT NULL,
    requests          INTEGER NOT NULL DEFAULT 0,
    refused           INTEGER NOT NULL DEFAULT 0,       -- answered with a code (refusals and failures)
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,       -- as reported
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    charged_tokens    INTEGER NOT NULL DEFAULT 0,
    cost_nano_usd     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (month, agent_id, tenant)
) STRICT;
