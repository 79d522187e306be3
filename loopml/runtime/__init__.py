"""Running loopml's own processes: Metaflow flows as subprocesses (:mod:`.flowrun`), the checks made before
one starts (:mod:`.preflight`), so that a bad spec or store fails in a second, not inside a flow, stopping a
command on a signal or its deadline (:mod:`.stopping`), and the little networking loopml does itself: a free
port, one JSON-over-HTTP client (:mod:`.net`)."""
