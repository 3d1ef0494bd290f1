from libs.common.migrations import run_env
from services.auth.models import AuthModel

run_env(AuthModel.metadata)
