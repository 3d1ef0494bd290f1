from sqlalchemy import MetaData

from libs.common.migrations import run_env

run_env(MetaData())
