"""NATS users for the deployments: the Helm values of deploy/k8s/nats/auth.yaml and the
nats-server configuration of docker-compose (deploy/nats/compose.conf), both written
from the service registry and libs/common/natsauth.py, so every service (and a new one,
`igny8 new-service`) has its user. Passwords are never written here: nats-server reads
each from its environment (`IGNY8_NATS_PASSWORD_<USER>`), filled from the Secret
`igny8-nats-users` (one key per user) in Kubernetes and from compose's local-only values.
"""

from __future__ import annotations

from collections.abc import Iterable

import yaml

from libs.common.natsauth import GATEWAY_USER, password_env, server_config, server_users

NATS_USERS_SECRET = "igny8-nats-users"
HELM_VALUES = "deploy/k8s/nats/auth.yaml"
COMPOSE_CONFIG = "deploy/nats/compose.conf"


def users(services: Iterable[str]) -> list[str]:
    """Every user, in a stable order (the file does not change when the registry's does)."""
    return [*sorted(set(services) - {GATEWAY_USER}), GATEWAY_USER]


def helm_values(services: Iterable[str]) -> str:
    names = users(services)
    entries = server_users({name: None for name in names})
    for entry in entries:  # the chart renders `<< ... >>` unquoted: a variable reference
        entry["password"] = f"<< ${password_env(str(entry['user']))} >>"
    values = {
        "config": {"merge": {"authorization": {"users": entries}}},
        "container": {"env": {
            password_env(name): {"valueFrom": {"secretKeyRef": {
                "name": NATS_USERS_SECRET, "key": name}}}
            for name in names}},
    }
    header = (
        f"# Generated from igny8/services.py and libs/common/natsauth.py ({__name__});\n"
        "# `igny8 new-service` rewrites it, igny8/tests/test_deploy.py checks it. One NATS\n"
        "# user per service and the gateway, no anonymous clients (issue 13, H3):\n"
        "#   kubectl -n igny8 create secret generic igny8-nats-users \\\n"
        + " \\\n".join(f"#     --from-literal={n}=\"$(openssl rand -hex 24)\"" for n in names)
        + "\n#   helm upgrade --install nats nats/nats -n igny8 -f deploy/k8s/nats/values.yaml \\\n"
        "#     -f deploy/k8s/nats/auth.yaml\n")
    return header + yaml.safe_dump(values, sort_keys=False, width=100)


def compose_config(services: Iterable[str]) -> str:
    return server_config({name: None for name in users(services)})
