from libs.common.migrations import run_env
from services.planner.models import PlannerModel

run_env(PlannerModel.metadata)
