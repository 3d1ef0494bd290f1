from libs.common.migrations import run_env
from services.billing.models import BillingModel

run_env(BillingModel.metadata)
