"""Running loopml's own processes: Metaflow flows as subprocesses (:mod:`.flowrun`) and the checks made
before one starts (:mod:`.preflight`), so that a bad spec or store fails in a second, not inside a flow."""
