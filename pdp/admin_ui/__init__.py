"""The admin page at /ui/ (admin role only): live numbers, quotas, decisions, health, a policy playground.

Server-rendered HTML and one small script (static/), no build step. The
page's data comes from /ui/api/*, each a thin reader of what the PDP already
has: its own metrics, the quota admin, the decision log's recent entries, the
engine behind pdp/engines/base.py's interface.
"""

from .resources import add_routes

__all__ = ["add_routes"]
