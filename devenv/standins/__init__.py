"""Stand-in backend services for `make run` (see echo_service)."""
