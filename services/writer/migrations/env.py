from libs.common.migrations import run_env
from services.writer.models import WriterModel

run_env(WriterModel.metadata)
