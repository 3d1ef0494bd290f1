"""Auth's settings: the platform ones plus token lifetimes and login throttling."""

from __future__ import annotations

from libs.common.settings import ServiceSettings


class AuthSettings(ServiceSettings):
    service_name: str = "auth"
    http_port: int = 8101

    access_token_ttl_seconds: int = 15 * 60
    refresh_token_ttl_seconds: int = 7 * 24 * 3600
    # Tokens minted for Basic and ApiKey credentials at the gateway's request.
    exchange_token_ttl_seconds: int = 5 * 60

    # A new signing key is published this long before it signs, so verifiers that see
    # its `kid` can fetch it (they refetch an unknown kid at most every few seconds).
    key_activation_delay_seconds: float = 10.0

    # Failed logins: per account (email) and per client address, in a sliding window.
    login_window_seconds: int = 15 * 60
    login_max_failures_per_account: int = 5
    login_max_failures_per_address: int = 20

    # Talking to AI providers when an account tests its integration settings.
    provider_timeout_seconds: float = 10.0
