"""The shared web layer, below every part: the one web application (``app``: an app factory
composing parts), request admission (``admission``: keys or a login session, CSRF, rate and body
limits), hashed API keys (``keys``), rate limiting and masking of personal data (``guard``),
login sessions (``sessions``), the error model (``errors``), Prometheus metrics (``metrics``) and
the pages' words in English and Chinese (``i18n``). Serving and the studio are parts on top."""
