"""Event routing: which events go to which targets. Pure, no I/O.

`pattern` reads and matches EventBridge-style event patterns; `rules` holds
rules and targets, indexes compiled rules for the writer, and builds the
document a pattern is matched against (which is also the body a webhook
target receives).
"""
