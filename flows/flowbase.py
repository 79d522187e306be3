"""What every loopml flow takes: the spec (its text travels with the run) and the store."""

import os

from metaflow import FlowSpec, IncludeFile, Parameter

from loopml.api import store_uri
from loopml.runtime.flowrun import follow_parent

# started by loopml (the CLI, the demo, a test): this process (the runtime, or one of its tasks) dies with
# the process that started it, so a killed CLI never leaves a flow writing behind its back
follow_parent()


class LoopmlFlow(FlowSpec):
    # IncludeFile: the spec's text is stored with the run, so remote tasks (Batch, Kubernetes) and
    # scheduled runs (Step Functions, Argo) read the spec given at launch or deploy time
    spec_text = IncludeFile("spec", help="project.yaml (default: $LOOPML_SPEC or project.yaml)",
                            default=os.environ.get("LOOPML_SPEC", "project.yaml"))
    spec_dir = Parameter("spec-dir", help="folder that relative data paths in the spec resolve against "
                         "(default: the launch folder; loopml passes the spec's folder)", default=os.getcwd())
    store = Parameter("store", help="store root: a folder or s3://bucket/prefix (default: $LOOPML_STORE or .loopml)",
                      default=store_uri())

    def load_spec(self):
        from loopml.spec import spec_from_text

        return spec_from_text(self.spec_text, self.spec_dir)
