"""Evidence from a running lab for a postmortem (`lab evidence`): packet captures of every
segment, the nodes' logs, queues, zone files and resolv.conf files, the firewall's ruleset,
`lab status`, and an index with a timeline built from the logs."""

# the limits of a capture: here, so that `lab evidence --help` need not import the collector
MAX_CAPTURE = 300.0  # seconds
MAX_PACKETS = 20_000  # per segment
