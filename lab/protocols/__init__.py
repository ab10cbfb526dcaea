"""The protocol code the services are built from: DNS (wire format, zones, answers, the
resolver and its cache, transfers), SMTP (the server engine, the client, the queue,
delivery, mailboxes, mail.log), the firewall's ruleset and connection log, the lab's TLS.
Plain libraries: they know nothing of labs, nodes or the supervisor."""
