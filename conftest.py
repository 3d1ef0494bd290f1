pytest_plugins = [
    "libs.common.testing.plugin",
    "libs.common.testing.seaweedfs",
    "libs.common.testing.network",
    "libs.common.testing.wordpress",
]
