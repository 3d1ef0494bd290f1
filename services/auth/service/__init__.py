"""Auth's domain logic, one module per sub-domain. No HTTP and no commits: functions take
a unit of work (its session and its outbox) and the acting principal, raise domain
errors, publish events.

- `sessions`: signing keys, sign-in and its throttling, refresh, revocation, the
  gateway's credential exchange, the session check and `/me`.
- `accounts`: accounts and registration, subscriptions, users (tenancy: who).
- `sites`: sites, sectors, site access and groups (tenancy: where).
- `catalogue`: plans, industries and their sectors, the seed keyword library and its
  CSV import.
- `ai_config`: the account's AI configuration: prompts and provider integrations.
- `common`: errors, role checks and helpers they all use.

Failures that must leave a trace (a failed sign-in counted, a reused refresh token's
family revoked) raise a `PersistentFailure`: the endpoint commits before answering.
"""
