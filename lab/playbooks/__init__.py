"""The playbook runner: playbooks as automated trainees, and the regression matrix."""
