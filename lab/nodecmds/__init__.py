"""The lab's own commands inside nodes (netguard, mailq, postqueue, sendmail,
netguard-alert): each a module with ``main(argv)``, run by a wrapper in the node's
/usr/local/sbin (lab/engine/nodebin.py)."""
