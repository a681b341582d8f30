"""Plain helpers shared by tests/ and bench/: free loopback ports, a real redis-server, the real web server and
`switchboard` processes. tests/conftest.py holds pytest's fixtures and imports these; bench never imports it."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
