"""``tunelab studio``: the whole workflow in a web page, a part of the one web application
(:mod:`tunelab.web.app`). ``jobs`` (the training queue that outlives the page and the studio),
``api`` (its JSON routes), ``pages`` (server-rendered pages), ``cli`` (the command)."""
