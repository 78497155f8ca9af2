"""doit entry point: the tasks of the run declared in rlm.yaml (see rlm_tasks.tasks)."""

import os

from rlm_tasks.tasks import doit_namespace

globals().update(doit_namespace(os.environ.get("RLM_CONFIG", "rlm.yaml")))
