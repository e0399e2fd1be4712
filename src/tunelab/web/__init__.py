"""The shared web layer: the one web application (``app``: an app factory composing parts
behind one guard), login sessions for pages (``sessions``); the studio's pages and assets."""
