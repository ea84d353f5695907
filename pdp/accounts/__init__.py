"""Accounts: users on MongoDB, short-lived sign-in state on Redis.

One module per job, each taking its dependencies:

- ``store``        UserStore: the users collection (unique email, wallet
                   bindings with a unique address, TOTP, profile) and session
                   metadata; indexes created at startup.
- ``audit``        AuditLog: who did what to whom, before/after, request id.
- ``emails``       normalizing and checking email addresses.
- ``refresh``      refresh-token families in Redis (rotation, reuse detection).
- ``issuer``       TokenIssuer: the access + refresh token pair of a sign-in.
- ``magic_links``  single-use mailed sign-in tokens in Redis.
- ``totp``         TOTP secrets (encrypted), replay and lockout state.
- ``mailer``       SMTP delivery.
- ``service``      SignIn / Accounts: the flows the HTTP resources call.

MongoDB is used with single-document atomic operations only (no
multi-document transactions), and every expiry is a filter on ``expires_at``,
never TTL-index timing.
"""
