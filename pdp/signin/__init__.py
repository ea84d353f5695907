"""The sign-in half of the PDP's auth service: falcon resources for
/api/v1/auth/* and /api/v1/users/*, over pdp.accounts (routes.add_routes)."""
