from libs.common.migrations import run_env
from services.automation.models import AutomationModel

run_env(AutomationModel.metadata)
