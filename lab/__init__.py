"""Mail-path troubleshooting lab: a virtual internet and company network in namespaces."""
