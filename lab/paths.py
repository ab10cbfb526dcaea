"""Where the project's own files are: the topologies, scenarios and playbooks that names
on the command line (``lab up mail-dmz``) refer to."""
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY_DIR = PROJECT_ROOT / "topologies"
SCENARIO_DIR = PROJECT_ROOT / "scenarios"
PLAYBOOK_DIR = PROJECT_ROOT / "playbooks"
