"""Evidence from a running lab for a postmortem (`lab evidence`): packet captures of every
segment, the nodes' logs, queues, zone files and resolv.conf files, the firewall's ruleset,
`lab status`, and an index with a timeline built from the logs."""
