-- netpolicy 0001: the agents' network (issue 11). The subnet in use, and for
-- each agent its address, the host-side name of its link and the egress
-- policy in force. The kernel (bridge, links, nftables) is rebuilt from these
-- rows when omertad starts, so they are the only state that must survive.
CREATE TABLE netpolicy_network (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    subnet     TEXT    NOT NULL,                          -- "10.88.0.0/24"
    -- The next conntrack mark to hand out. A mark names one version of one
    -- agent's policy and is never reused, so a connection marked under an
    -- older version (or by an agent since deleted whose address came back)
    -- is checked again against the policy in force.
    next_mark  INTEGER NOT NULL CHECK (next_mark BETWEEN 1 AND 4294967295),
    updated_at TEXT    NOT NULL
) STRICT;

CREATE TABLE netpolicy_agents (
    agent_id   TEXT    PRIMARY KEY,                       -- a DNS label
    address    TEXT    NOT NULL UNIQUE,                   -- in netpolicy_network.subnet
    veth       TEXT    NOT NULL UNIQUE,                   -- host side of the agent's link
    egress     TEXT    NOT NULL,                          -- normalised Egress JSON
    mark       INTEGER NOT NULL CHECK (mark BETWEEN 1 AND 4294967295),
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
) STRICT;
