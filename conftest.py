pytest_plugins = ["libs.common.testing.plugin", "libs.common.testing.seaweedfs"]
