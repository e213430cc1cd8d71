"""SSH: users' keys, instances' SSH access, and the gateway through which users reach them."""

from hub.features import Feature, Service

feature = Feature(
    name="ssh",
    description="SSH keys, instances' SSH settings, and the SSH gateway (one port for all).",
    requires=("instances",),
    scopes={"keys:manage": "Register, generate and delete SSH keys."},
    audit_events={
        "addKey": "An SSH key was registered or generated.",
        "deleteKey": "An SSH key was deleted.",
        "connectSSH": "An SSH connection to an instance was accepted or refused.",
    },
    tables=["ssh_gateway.keys"],
    migrations="ssh_gateway.migrations",
    openapi="ssh_gateway:openapi.yaml",
    handlers=["ssh_gateway.api"],
    hub_config="ssh_gateway.hub_config:hub_config",
    forget_user="ssh_gateway.keys:forget_user",
    services=[
        Service(
            name="ssh-gateway",
            module="ssh_gateway",
            description="The SSH gateway checks instances' SSH settings and reports activity.",
            scopes=["read:users", "read:servers", "users:activity"],
        )
    ],
)
