"""The REST API under /v1, served by ryu-manager's WSGI."""
