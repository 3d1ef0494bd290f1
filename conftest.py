pytest_plugins = [
    "libs.common.testing.plugin",
    "libs.common.testing.seaweedfs",
    "libs.common.testing.network",
    "libs.common.testing.wordpress",
    "libs.common.testing.fake_openai",
    "libs.common.testing.fake_runware",
]
