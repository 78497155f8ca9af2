from rlm_tasks.cli.main import entry

entry()
