from libs.common.migrations import run_env
from libs.common.tests.models import KernelTestModel

run_env(KernelTestModel.metadata)
